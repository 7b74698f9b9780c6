import { createHash, randomBytes } from "node:crypto";
import { connect } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { isNovaError } from "../../lib/errors.js";
import { decodeReply, encodeHello, RejectReason, readHandshake, versionMask } from "../wire/handshake.js";
import { dialSession } from "./dial.js";
import { DwcpListener } from "./listen.js";
import type { DwcpSession } from "./session.js";

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function pair(
  opts: { streams?: number; clientVersions?: (1 | 3)[]; serverVersions?: (1 | 3)[]; tuning?: object } = {},
) {
  const listener = await DwcpListener.listen({
    versions: opts.serverVersions ?? [1, 3],
    tuning: opts.tuning ?? {},
  });
  cleanup.push(() => listener.close());
  const [client, server] = await Promise.all([
    dialSession({
      port: listener.port,
      streams: opts.streams ?? 1,
      versions: opts.clientVersions ?? [1, 3],
      tuning: opts.tuning ?? {},
    }),
    listener.accept(),
  ]);
  cleanup.push(
    () => client.destroy(),
    () => server.destroy(),
  );
  return { client, server, listener };
}

async function drain(session: DwcpSession): Promise<{ label: string; digest: string; messages: number }> {
  const ch = await session.accept();
  const h = createHash("sha256");
  let messages = 0;
  for await (const m of ch) {
    h.update(m);
    messages++;
  }
  return { label: ch.label, digest: h.digest("hex"), messages };
}

describe("DWCP session over loopback", () => {
  it("negotiates v3 and carries a channel's messages intact over several connections", async () => {
    const { client, server } = await pair({ streams: 4 });
    expect(client.version).toBe(3);
    expect(server.streamCount).toBe(4);
    const got = drain(server);
    const ch = client.openChannel("mem");
    const h = createHash("sha256");
    for (let i = 0; i < 200; i++) {
      const m = randomBytes(1 + ((i * 7919) % 300_000));
      h.update(m);
      await ch.send(m);
    }
    await ch.end();
    expect(await got).toEqual({ label: "mem", digest: h.digest("hex"), messages: 200 });
    await Promise.all([client.close(), server.closed]);
    expect(await server.closed).toBeNull();
  });

  it("falls back to v1 when one side only speaks v1", async () => {
    const { client, server } = await pair({ clientVersions: [1], streams: 4 });
    expect(client.version).toBe(1);
    expect(server.version).toBe(1);
    expect(client.streamCount).toBe(1);
    const got = drain(server);
    const ch = client.openChannel("ctl");
    await ch.send(Buffer.from("hello"));
    await ch.end();
    expect((await got).messages).toBe(1);
  });

  it("fails with a version error when the peers share no version", async () => {
    const listener = await DwcpListener.listen({ versions: [3] });
    cleanup.push(() => listener.close());
    const err = await dialSession({ port: listener.port, versions: [1] }).catch((e) => e);
    expect(isNovaError(err, "NOVA_DWCP_VERSION")).toBe(true);
    expect(err.message).toMatch(/we speak 1, the peer speaks 3/);
  });

  it("loses and duplicates nothing when connections are killed mid-transfer", async () => {
    const { client, server } = await pair({ streams: 3, tuning: { windowBytes: 4 << 20 } });
    const got = drain(server);
    const ch = client.openChannel("mem");
    const h = createHash("sha256");
    for (let i = 0; i < 400; i++) {
      const m = randomBytes(64 * 1024);
      h.update(m);
      await ch.send(m);
      if (i === 100) client.connectionSockets()[0]!.destroy();
      if (i === 250) server.connectionSockets()[1]!.destroy();
    }
    await ch.end();
    expect(await got).toEqual({ label: "mem", digest: h.digest("hex"), messages: 400 });
    expect(client.stats().connectionsReplaced).toBeGreaterThanOrEqual(1);
  });

  it("replaces a connection that stalls without closing and resends what it held", async () => {
    const { client, server } = await pair({
      streams: 2,
      tuning: { stallTimeoutMs: 400, windowBytes: 2 << 20 },
    });
    const got = drain(server);
    const ch = client.openChannel("mem");
    const h = createHash("sha256");
    // The listener stops reading one connection: it is alive but delivers nothing.
    server.connectionSockets()[0]!.pause();
    for (let i = 0; i < 60; i++) {
      const m = randomBytes(64 * 1024);
      h.update(m);
      await ch.send(m);
    }
    await ch.end();
    expect(await got).toEqual({ label: "mem", digest: h.digest("hex"), messages: 60 });
    expect(client.stats().connectionsReplaced).toBeGreaterThanOrEqual(1);
    expect(client.stats().framesResent).toBeGreaterThan(0);
  });

  it("keeps memory bounded: a fast producer waits for a slow consumer", async () => {
    const { client, server } = await pair({ tuning: { windowBytes: 1 << 20 } });
    const ch = client.openChannel("bulk");
    let sent = 0;
    const producer = (async () => {
      for (let i = 0; i < 64; i++) {
        await ch.send(Buffer.alloc(128 * 1024, i));
        sent++;
      }
      await ch.end();
    })();
    const rx = await server.accept();
    await new Promise((r) => setTimeout(r, 200));
    // Nothing has been read yet: only about a window's worth can be in flight.
    expect(sent).toBeLessThanOrEqual(9);
    expect(client.stats().outstandingBytes).toBeLessThanOrEqual(1 << 20);
    let n = 0;
    for await (const _ of rx) n++;
    await producer;
    expect(n).toBe(64);
  });

  it("measures path capacity with a PAD probe without disturbing channels", async () => {
    const { client, server } = await pair({ streams: 2 });
    const got = drain(server);
    const bps = await client.probeCapacity(8 * 1024 * 1024);
    expect(bps).toBeGreaterThan(50e6);
    const ch = client.openChannel("after-probe");
    await ch.send(Buffer.from("still fine"));
    await ch.end();
    expect((await got).messages).toBe(1);
  });

  it("ends a session with a protocol error when the peer sends garbage", async () => {
    const { client, server } = await pair();
    client.connectionSockets()[0]!.write(Buffer.alloc(100, 0xab));
    const err = await server.closed;
    expect(isNovaError(err, "NOVA_DWCP_PROTOCOL")).toBe(true);
  });

  it("refuses a JOIN for a session it does not know, with a reason", async () => {
    const listener = await DwcpListener.listen();
    cleanup.push(() => listener.close());
    const sock = connect(listener.port, "127.0.0.1");
    cleanup.push(() => {
      sock.destroy();
    });
    await new Promise((r) => sock.once("connect", r));
    sock.write(
      encodeHello({
        versions: versionMask([3]),
        join: true,
        capabilities: 0xf,
        sessionId: randomBytes(16),
        windowBytes: 1 << 20,
        maxPayload: 1 << 16,
        publicKey: Buffer.alloc(32),
      }),
    );
    const reply = decodeReply((await readHandshake(sock, 2000)).message);
    expect(reply.accepted).toBe(false);
    expect(reply.reason).toBe(RejectReason.UNKNOWN_SESSION);
  });

  it("ends a v1 session with a connection error when its only connection breaks", async () => {
    const { client, server } = await pair({ clientVersions: [1] });
    server.connectionSockets()[0]!.destroy();
    const err = await client.closed;
    expect(isNovaError(err, "NOVA_DWCP_CONNECTION")).toBe(true);
  });

  it("closes in order and fails channels that never ended (their data was never verified)", async () => {
    const { client, server } = await pair({ streams: 2 });
    const open = client.openChannel("left-open");
    await open.send(Buffer.from("x"));
    const rx = await server.accept();
    await client.close();
    expect(await server.closed).toBeNull();
    await expect(rx.read()).rejects.toThrow(/closed the session/);
    await expect(open.send(Buffer.from("y"))).rejects.toThrow();
  });

  it("keeps a channel flowing while another channel's reader is stalled", async () => {
    const windowBytes = 1 << 20;
    const { client, server } = await pair({ streams: 2, tuning: { windowBytes } });
    const stalled = client.openChannel("stalled");
    const busy = client.openChannel("busy");
    const rxStalled = await server.accept();
    const rxBusy = await server.accept();
    const chunk = randomBytes(32 * 1024);
    // Far more than the whole session window into a channel nobody reads: the writer
    // stops at the channel's credit (three quarters of the window), not at the session's.
    let stalledSent = 0;
    const writer = (async () => {
      for (let i = 0; i < 64; i++) {
        await stalled.send(chunk);
        stalledSent += chunk.length;
      }
    })();
    // Meanwhile 4 windows' worth goes through the other channel.
    const h = createHash("sha256");
    const got = (async () => {
      const r = createHash("sha256");
      for await (const m of rxBusy) r.update(m);
      return r.digest("hex");
    })();
    for (let i = 0; i < 128; i++) {
      const m = randomBytes(32 * 1024);
      h.update(m);
      await busy.send(m);
    }
    await busy.end();
    expect(await got).toBe(h.digest("hex"));
    expect(stalledSent).toBeLessThanOrEqual((windowBytes * 3) / 4);
    expect(stalledSent).toBeGreaterThan(windowBytes / 2);
    // Once read, the stalled channel delivers everything, intact.
    let read = 0;
    const drained = (async () => {
      for await (const m of rxStalled) read += m.length;
    })();
    await writer;
    await stalled.end();
    await drained;
    expect(read).toBe(64 * chunk.length);
  });

  it("delivers a channel's message while another channel's earlier frame is held up on its connection", async () => {
    const { client, server } = await pair({ streams: 2, tuning: { stallTimeoutMs: 30_000 } });
    const a = client.openChannel("a");
    const b = client.openChannel("b");
    const rxA = await server.accept();
    const rxB = await server.accept();
    // The listener stops reading every connection; "a"'s message is sent into one of them.
    for (const s of server.connectionSockets()) s.pause();
    const clientSockets = client.connectionSockets();
    const before = clientSockets.map((s) => s.bytesWritten);
    const msgA = randomBytes(100 * 1024);
    await a.send(msgA);
    const carrier = clientSockets.findIndex((s, i) => s.bytesWritten - before[i]! >= msgA.length);
    expect(carrier).toBeGreaterThanOrEqual(0);
    const held = server.connectionSockets().find((s) => s.remotePort === clientSockets[carrier]!.localPort)!;
    expect(held).toBeDefined();
    for (const s of server.connectionSockets()) if (s !== held) s.resume();
    // "b"'s message, later in the session's sequence, goes to the other connection and is
    // delivered without waiting for "a"'s.
    let aArrived = false;
    const readA = rxA.read().then((m) => {
      aArrived = true;
      return m;
    });
    const msgB = randomBytes(1000);
    await b.send(msgB);
    const gotB = await Promise.race([
      rxB.read(),
      new Promise<null>((resolve) => setTimeout(() => resolve(null), 10_000).unref()),
    ]);
    expect(gotB).toEqual(msgB);
    expect(aArrived).toBe(false);
    held.resume();
    expect(await readA).toEqual(msgA);
  });
});
