/**
 * Sockets inside a network namespace for a process that lives outside it. A Node process
 * cannot switch namespaces, so a tiny helper Node process is started inside the
 * namespace (`ip netns exec`); it listens or connects there and passes the resulting
 * server or socket back over the IPC channel. The handles keep their namespace, so the
 * parent's traffic really crosses the emulated link.
 *
 * Dev-only test tooling (src/testing/): only tests, benches, src/demo and *.test.ts may
 * import it; the shipped library never does.
 */
import { type ChildProcess, spawn } from "node:child_process";
import type { Server, Socket } from "node:net";
import { NovaError } from "../../lib/errors.js";

const HELPER = `
const net = require("node:net");
process.on("message", (m) => {
  const fail = (e) => process.send({ id: m.id, error: e.message });
  if (m.op === "listen") {
    const s = net.createServer();
    s.once("error", fail);
    s.listen(m.port, m.host, () => process.send({ id: m.id, ok: true }, s, () => s.close()));
  } else if (m.op === "connect") {
    const c = net.connect(m.port, m.host);
    c.once("error", fail);
    c.once("connect", () => process.send({ id: m.id, ok: true }, c));
  }
});
process.on("disconnect", () => process.exit(0));
process.send({ ready: true });
`;

interface Reply {
  id?: number;
  ok?: boolean;
  error?: string;
  ready?: boolean;
}

/** Listens and connects from inside one network namespace. */
export class NamespaceSockets {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (h: unknown) => void; reject: (e: Error) => void }>();

  private constructor(
    readonly ns: string,
    private readonly child: ChildProcess,
  ) {
    child.on("message", (m: Reply, handle: unknown) => {
      if (m.id === undefined) return;
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.error) p.reject(new NovaError("NOVA_DWCP_CONNECTION", `In namespace ${ns}: ${m.error}`));
      else p.resolve(handle);
    });
    child.on("exit", () => {
      for (const p of this.pending.values())
        p.reject(new NovaError("NOVA_DWCP_EMULATOR", `Namespace helper for ${ns} exited`));
      this.pending.clear();
    });
  }

  /** Starts the helper inside `ns`. */
  static async start(ns: string): Promise<NamespaceSockets> {
    const child = spawn("ip", ["netns", "exec", ns, process.execPath, "-e", HELPER], {
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new NovaError("NOVA_DWCP_EMULATOR", `Namespace helper for ${ns} did not start`)),
        15_000,
      );
      child.once("message", () => {
        clearTimeout(timer);
        resolve();
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new NovaError("NOVA_DWCP_EMULATOR", `Namespace helper for ${ns} exited with ${code}`));
      });
    });
    return new NamespaceSockets(ns, child);
  }

  private request<T>(msg: Record<string, unknown>): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (h: unknown) => void, reject });
      this.child.send({ ...msg, id });
    });
  }

  /** A server listening on host:port inside the namespace, accepting in this process. */
  listen(port: number, host = "0.0.0.0"): Promise<Server> {
    return this.request<Server>({ op: "listen", host, port });
  }

  /** A socket connected from inside the namespace to host:port. */
  connect(host: string, port: number): Promise<Socket> {
    return this.request<Socket>({ op: "connect", host, port });
  }

  /** Stops the helper. */
  close(): void {
    if (this.child.exitCode === null) this.child.kill("SIGTERM");
  }
}
