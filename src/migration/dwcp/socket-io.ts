/**
 * Small socket helpers shared by the relays: where a relay meets QEMU (a local TCP port or
 * a unix socket), connecting to such an endpoint, and writing with backpressure.
 */
import net, { type Server, type Socket } from "node:net";
import tls from "node:tls";
import { NovaError } from "../../lib/errors.js";

/**
 * A local endpoint: TCP (`host` defaults to 127.0.0.1) or a unix socket path. `tls` makes
 * connectLocal speak TLS (a destination QEMU whose migration listener requires it).
 */
export type LocalEndpoint = { host?: string; port: number; tls?: tls.ConnectionOptions } | { path: string };

/** QEMU's URI for an endpoint, e.g. "tcp:127.0.0.1:46100" or "unix:/run/x.sock". */
export function qemuUri(ep: LocalEndpoint): string {
  if ("path" in ep) return `unix:${ep.path}`;
  const host = ep.host ?? "127.0.0.1";
  return `tcp:${host.includes(":") ? `[${host}]` : host}:${ep.port}`;
}

/** Starts a server on `ep` (port 0 picks one) and returns it with the bound endpoint. */
export async function listenLocal(
  ep: LocalEndpoint,
  onConnection: (s: Socket) => void,
): Promise<{ server: Server; endpoint: LocalEndpoint }> {
  const server = net.createServer({ allowHalfOpen: true }, onConnection);
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err) =>
      reject(
        new NovaError("NOVA_MIGRATION_RELAY", `Failed to listen for QEMU: ${err.message}`, { cause: err }),
      ),
    );
    if ("path" in ep) server.listen(ep.path, () => resolve());
    else server.listen(ep.port, ep.host ?? "127.0.0.1", () => resolve());
  });
  if ("path" in ep) return { server, endpoint: ep };
  const a = server.address();
  return {
    server,
    endpoint: { host: ep.host ?? "127.0.0.1", port: typeof a === "object" && a ? a.port : 0 },
  };
}

/** Connects to a local endpoint, bounded by `timeoutMs`. */
export function connectLocal(ep: LocalEndpoint, timeoutMs = 10_000): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const secure = "path" in ep ? undefined : ep.tls;
    const s =
      "path" in ep
        ? net.connect({ path: ep.path, allowHalfOpen: true })
        : secure
          ? // TLS has no half-close; the relay ends the socket only after the whole stream.
            tls.connect({ ...secure, host: ep.host ?? "127.0.0.1", port: ep.port })
          : net.connect({ host: ep.host ?? "127.0.0.1", port: ep.port, allowHalfOpen: true });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new NovaError("NOVA_MIGRATION_RELAY", `Timed out connecting to ${qemuUri(ep)}`));
    }, timeoutMs);
    s.once(secure ? "secureConnect" : "connect", () => {
      clearTimeout(timer);
      s.setNoDelay(true);
      resolve(s);
    });
    s.once("error", (err) => {
      clearTimeout(timer);
      reject(
        new NovaError("NOVA_MIGRATION_RELAY", `Failed to connect to ${qemuUri(ep)}: ${err.message}`, {
          cause: err,
        }),
      );
    });
  });
}

/** Resolves when a socket whose write() returned false can take more; rejects if it closes first. */
export function waitDrain(s: Socket): Promise<void> {
  if (s.destroyed) return Promise.reject(new NovaError("NOVA_MIGRATION_RELAY", "The socket is closed"));
  return new Promise((resolve, reject) => {
    const done = (err?: Error): void => {
      s.off("drain", onDrain);
      s.off("close", onClose);
      if (err) reject(err);
      else resolve();
    };
    const onDrain = (): void => done();
    // A peer that read everything and then closed (QEMU at the end of its stream) can close
    // a TLS socket before its 'drain' is emitted: with nothing left unsent, that is the end,
    // not a failure (whether the peer took all of it, QEMU's own load check says).
    const onClose = (): void =>
      s.writableLength === 0
        ? done()
        : done(new NovaError("NOVA_MIGRATION_RELAY", "The socket closed while the relay was writing"));
    s.on("drain", onDrain);
    s.on("close", onClose);
  });
}
