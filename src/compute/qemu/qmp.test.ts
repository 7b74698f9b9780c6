import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { isNovaError, type NovaError } from "../../lib/errors.js";
import { waitFor } from "../../lib/wait.js";
import { cont, queryKvm, queryStatus, quit } from "./commands.js";
import { QmpClient, type QmpEvent } from "./qmp.js";

/** The error `p` rejects with; fails the test when it resolves. */
async function rejection(p: Promise<unknown>): Promise<NovaError> {
  try {
    await p;
  } catch (err) {
    return err as NovaError;
  }
  throw new Error("expected the promise to reject");
}

const GREETING = {
  QMP: { version: { qemu: { micro: 0, minor: 2, major: 7 }, package: "fake" }, capabilities: ["oob"] },
};

interface Request {
  execute: string;
  arguments?: Record<string, unknown>;
  id?: unknown;
}

/**
 * A scripted QMP server: sends the greeting (unless told not to), answers
 * qmp_capabilities, and hands every other request to `handler`, which writes replies.
 */
class FakeQmp {
  readonly server: net.Server;
  readonly requests: Request[] = [];
  socket: net.Socket | undefined;
  handler: (req: Request, sock: net.Socket) => void = (req, sock) => reply(sock, { return: {}, id: req.id });
  greeting: string | undefined = `${JSON.stringify(GREETING)}\r\n`;
  capabilitiesReply: (req: Request) => unknown = (req) => ({ return: {}, id: req.id });

  constructor(readonly socketPath: string) {
    this.server = net.createServer((sock) => {
      this.socket = sock;
      if (this.greeting) sock.write(this.greeting);
      let buf = "";
      sock.on("data", (chunk) => {
        buf += chunk.toString("utf8");
        for (let nl = buf.indexOf("\n"); nl !== -1; nl = buf.indexOf("\n")) {
          const req = JSON.parse(buf.slice(0, nl)) as Request;
          buf = buf.slice(nl + 1);
          this.requests.push(req);
          if (req.execute === "qmp_capabilities")
            sock.write(`${JSON.stringify(this.capabilitiesReply(req))}\r\n`);
          else this.handler(req, sock);
        }
      });
      sock.on("error", () => {});
    });
  }

  listen(): Promise<void> {
    return new Promise((resolve) => this.server.listen(this.socketPath, resolve));
  }

  close(): Promise<void> {
    this.socket?.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

function reply(sock: net.Socket, msg: unknown): void {
  sock.write(`${JSON.stringify(msg)}\r\n`);
}

let dir: string;
let fake: FakeQmp;
const clients: QmpClient[] = [];

async function connect(opts?: { timeoutMs?: number }): Promise<QmpClient> {
  const client = await QmpClient.connect(fake.socketPath, opts);
  clients.push(client);
  return client;
}

beforeEach(async () => {
  dir = await mkdtemp("/tmp/nc-qemu-qmp-unit-");
  fake = new FakeQmp(path.join(dir, "qmp.sock"));
  await fake.listen();
});

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  await fake.close();
  await rm(dir, { recursive: true, force: true });
});

describe("QmpClient", () => {
  it("reads the greeting and negotiates capabilities before returning", async () => {
    const client = await connect();
    expect(client.greeting.version.qemu).toEqual({ micro: 0, minor: 2, major: 7 });
    expect(fake.requests[0]).toMatchObject({ execute: "qmp_capabilities" });
    expect(client.closed).toBe(false);
  });

  it("matches replies to requests by id, even when they arrive out of order", async () => {
    const held: Request[] = [];
    fake.handler = (req, sock) => {
      held.push(req);
      if (held.length === 2) {
        // Answer the second request first, both in one write.
        sock.write(
          `${JSON.stringify({ return: { n: 2 }, id: held[1]!.id })}\r\n${JSON.stringify({ return: { n: 1 }, id: held[0]!.id })}\r\n`,
        );
      }
    };
    const client = await connect();
    const [a, b] = await Promise.all([client.execute("first"), client.execute("second")]);
    expect(a).toEqual({ n: 1 });
    expect(b).toEqual({ n: 2 });
  });

  it("passes arguments and typed wrappers decode replies", async () => {
    fake.handler = (req, sock) => {
      if (req.execute === "query-status")
        reply(sock, { return: { status: "paused", singlestep: false, running: false }, id: req.id });
      else if (req.execute === "query-kvm")
        reply(sock, { return: { enabled: false, present: true }, id: req.id });
      else reply(sock, { return: {}, id: req.id });
    };
    const client = await connect();
    expect(await queryStatus(client)).toEqual({ status: "paused", running: false });
    expect(await queryKvm(client)).toEqual({ enabled: false, present: true });
    await cont(client);
    await client.execute("human-monitor-command", { "command-line": "info block" });
    expect(fake.requests.at(-1)).toMatchObject({ arguments: { "command-line": "info block" } });
  });

  it("maps a QMP error reply to NOVA_QEMU_ERROR with command, class and description", async () => {
    fake.handler = (req, sock) =>
      reply(sock, {
        error: { class: "CommandNotFound", desc: `The command ${req.execute} has not been found` },
        id: req.id,
      });
    const client = await connect();
    const err = await rejection(client.execute("bogus"));
    expect(isNovaError(err, "NOVA_QEMU_ERROR")).toBe(true);
    expect(err.details).toEqual({
      command: "bogus",
      qmpClass: "CommandNotFound",
      desc: "The command bogus has not been found",
    });
    expect(err.message).toContain("bogus");
    expect(client.closed).toBe(false);
  });

  it("delivers events interleaved with replies to every listener until unsubscribed", async () => {
    fake.handler = (req, sock) => {
      sock.write(
        `${JSON.stringify({ event: "STOP", timestamp: { seconds: 5, microseconds: 6 } })}\r\n` +
          `${JSON.stringify({ return: {}, id: req.id })}\r\n` +
          `${JSON.stringify({ event: "RESUME", data: { x: 1 } })}\r\n`,
      );
    };
    const client = await connect();
    const seen: QmpEvent[] = [];
    const other: string[] = [];
    const unsubscribe = client.onEvent((ev) => seen.push(ev));
    client.onEvent((ev) => other.push(ev.event));
    client.onEvent(() => {
      throw new Error("a broken listener must not break the session");
    });
    await client.execute("stop");
    await waitFor(() => seen.length === 2, { timeoutMs: 2_000 });
    expect(seen).toEqual([
      { event: "STOP", timestamp: { seconds: 5, microseconds: 6 } },
      { event: "RESUME", data: { x: 1 } },
    ]);
    unsubscribe();
    await client.execute("stop");
    await waitFor(() => other.length === 4, { timeoutMs: 2_000 });
    expect(seen).toHaveLength(2);
  });

  it("rejects pending requests with NOVA_QMP_PROTOCOL when QEMU closes the socket, and reports the close", async () => {
    fake.handler = () => {};
    const client = await connect();
    const closeErrors: Array<Error | undefined> = [];
    client.onClose((err) => closeErrors.push(err));
    const pending = rejection(client.execute("query-status"));
    await waitFor(() => fake.requests.length === 2, { timeoutMs: 2_000 });
    fake.socket!.destroy();
    const err = await pending;
    expect(isNovaError(err, "NOVA_QMP_PROTOCOL")).toBe(true);
    expect(err.message).toContain("query-status");
    expect(client.closed).toBe(true);
    expect(closeErrors).toHaveLength(1);
    expect(isNovaError(closeErrors[0], "NOVA_QMP_PROTOCOL")).toBe(true);
    const later = await rejection(client.execute("query-status"));
    expect(isNovaError(later, "NOVA_QMP_PROTOCOL")).toBe(true);
  });

  it("ends the session with NOVA_QMP_PROTOCOL when QEMU sends garbage", async () => {
    fake.handler = (_req, sock) => sock.write("garbage{\r\n");
    const client = await connect();
    const err = await rejection(client.execute("query-status"));
    expect(isNovaError(err, "NOVA_QMP_PROTOCOL")).toBe(true);
    expect(err.message).toContain("malformed JSON");
    expect(client.closed).toBe(true);
  });

  it("close() rejects pending requests and reports a deliberate close without an error", async () => {
    fake.handler = () => {};
    const client = await connect();
    let closeArg: Error | undefined | "not called" = "not called";
    client.onClose((err) => {
      closeArg = err;
    });
    const pending = rejection(client.execute("query-status"));
    await client.close();
    expect(isNovaError(await pending, "NOVA_QMP_PROTOCOL")).toBe(true);
    expect(closeArg).toBeUndefined();
    expect(client.closed).toBe(true);
  });

  it("times out a command without a reply and keeps the session usable", async () => {
    let answer = false;
    fake.handler = (req, sock) => {
      if (answer) reply(sock, { return: { ok: true }, id: req.id });
    };
    const client = await connect();
    const err = await rejection(client.execute("slow", undefined, { timeoutMs: 50 }));
    expect(isNovaError(err, "NOVA_TIMEOUT")).toBe(true);
    answer = true;
    expect(await client.execute("fast")).toEqual({ ok: true });
  });

  it("treats the socket closing after quit as success", async () => {
    fake.handler = (_req, sock) => sock.destroy();
    const client = await connect();
    await quit(client);
    expect(client.closed).toBe(true);
  });

  it("fails to connect with NOVA_QMP_PROTOCOL naming the socket when nothing listens", async () => {
    const missing = path.join(dir, "nobody.sock");
    const err = await rejection(QmpClient.connect(missing));
    expect(isNovaError(err, "NOVA_QMP_PROTOCOL")).toBe(true);
    expect(err.message).toContain(missing);
    expect(err.details).toMatchObject({ errno: "ENOENT" });
  });

  it("times out connecting when no greeting arrives", async () => {
    fake.greeting = undefined;
    const err = await rejection(QmpClient.connect(fake.socketPath, { timeoutMs: 100 }));
    expect(isNovaError(err, "NOVA_TIMEOUT")).toBe(true);
  });

  it("fails to connect when capability negotiation is refused", async () => {
    fake.capabilitiesReply = (req) => ({
      error: { class: "CommandNotFound", desc: "Capabilities negotiation is already complete" },
      id: req.id,
    });
    const err = await rejection(QmpClient.connect(fake.socketPath));
    expect(isNovaError(err, "NOVA_QEMU_ERROR")).toBe(true);
    expect(err.details).toMatchObject({ command: "qmp_capabilities" });
  });
});
