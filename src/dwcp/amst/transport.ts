/**
 * Opening the byte pipes a session runs on (docs/dwcp.md §6): plain TCP, or TLS 1.3 over
 * it with the server's certificate checked (the listener's TLS side lives in listen.ts).
 * Owns only socket setup; framing and the DWCP handshake happen after this.
 */
import { connect as netConnect, type Socket } from "node:net";
import { type ConnectionOptions, connect as tlsConnect } from "node:tls";
import { NovaError } from "../../lib/errors.js";

/** Produces a connected raw socket; lets callers dial from inside a network namespace. */
export type SocketFactory = () => Promise<Socket>;

/** Connects a plain TCP socket. */
export function tcpConnect(host: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ host, port });
    const timer = setTimeout(() => {
      s.destroy();
      reject(
        new NovaError(
          "NOVA_DWCP_CONNECTION",
          `Timed out connecting to ${host}:${port} after ${timeoutMs} ms`,
        ),
      );
    }, timeoutMs);
    s.once("connect", () => {
      clearTimeout(timer);
      s.off("error", onError);
      resolve(s);
    });
    const onError = (err: Error): void => {
      clearTimeout(timer);
      reject(
        new NovaError("NOVA_DWCP_CONNECTION", `Failed connecting to ${host}:${port}: ${err.message}`, {
          cause: err,
        }),
      );
    };
    s.once("error", onError);
  });
}

/** Runs the TLS 1.3 client handshake over `raw`; the server certificate must verify. */
export function tlsClient(raw: Socket, options: ConnectionOptions, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ rejectUnauthorized: true, ...options, socket: raw, minVersion: "TLSv1.3" });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new NovaError("NOVA_DWCP_HANDSHAKE", `TLS handshake did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    s.once("secureConnect", () => {
      clearTimeout(timer);
      s.off("error", onError);
      resolve(s);
    });
    const onError = (err: Error): void => {
      clearTimeout(timer);
      s.destroy();
      reject(
        new NovaError("NOVA_DWCP_HANDSHAKE", `TLS handshake with the DWCP peer failed: ${err.message}`, {
          cause: err,
        }),
      );
    };
    s.once("error", onError);
  });
}
