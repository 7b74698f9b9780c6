/**
 * DWCP against unauthenticated and misbehaving peers (issue 12, docs/dwcp.md §2.2, §2.3,
 * §3.3, §6): floods, connection caps, handshake deadlines, JOIN without the session's key,
 * replayed JOINs, foreign certificates, a peer without TLS, a peer that does not read.
 * Real sockets on loopback; the attacker speaks raw bytes where the library would refuse to.
 */
import { randomBytes } from "node:crypto";
import { connect, createServer, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { isNovaError } from "../../lib/errors.js";
import { haveOpenssl, makeTlsCluster } from "../../testing/tls-fixtures.js";
import { encodeHeader, FrameType } from "../wire/frame.js";
import {
  decodeAuth,
  decodeReply,
  encodeHello,
  encodeProof,
  HANDSHAKE_BYTES,
  messageKind,
  newKeyShare,
  RejectReason,
  readHandshake,
  versionMask,
} from "../wire/handshake.js";
import { dialSession } from "./dial.js";
import { DwcpListener, type ListenOptions } from "./listen.js";
import { DwcpSession } from "./session.js";
import { DEFAULT_TUNING } from "./session-config.js";
import { tcpConnect, tlsClient } from "./transport.js";

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function listen(options: ListenOptions = {}): Promise<DwcpListener> {
  const l = await DwcpListener.listen(options);
  cleanup.push(() => l.close());
  return l;
}

async function rawConnect(port: number, localAddress = "127.0.0.1"): Promise<Socket> {
  const s = connect({ port, host: "127.0.0.1", localAddress });
  s.on("error", () => undefined);
  cleanup.push(() => {
    s.destroy();
  });
  await new Promise((r) => s.once("connect", r));
  return s;
}

/** True when the peer closed `s` within `ms` (what it still sends is read and dropped). */
function closedWithin(s: Socket, ms: number): Promise<boolean> {
  if (s.destroyed || s.readyState === "closed") return Promise.resolve(true);
  // A paused socket never sees the peer's FIN behind unread bytes.
  s.resume();
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    s.once("close", () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

async function until(cond: () => boolean, ms: number): Promise<void> {
  const end = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function hello(sessionId: Buffer, join: boolean, publicKey: Buffer = Buffer.alloc(32)): Buffer {
  return encodeHello({
    versions: versionMask([3]),
    join,
    capabilities: 0xf,
    sessionId,
    windowBytes: 16 << 20,
    maxPayload: 256 << 10,
    publicKey,
  });
}

/** A raw client that opens a new session by hand (with a real key share) and gets its WELCOME. */
async function rawSession(port: number): Promise<{ sock: Socket; rest: Buffer }> {
  const sock = await rawConnect(port);
  sock.write(hello(randomBytes(16), false, newKeyShare().publicKey));
  const { message, rest } = await readHandshake(sock, 2000);
  expect(decodeReply(message).accepted).toBe(true);
  return { sock, rest };
}

describe("DWCP bounds before authentication", () => {
  it("destroys connections over the pending caps, per address and in total, before reading", async () => {
    const l = await listen({ maxPendingPerAddress: 4, maxPendingConnections: 6 });
    const a = await Promise.all(Array.from({ length: 5 }, () => rawConnect(l.port, "127.0.0.1")));
    await until(() => l.pendingConnections + l.refusedConnections === 5, 2000);
    expect(l.pendingConnections).toBe(4);
    const b = await Promise.all(Array.from({ length: 3 }, () => rawConnect(l.port, "127.0.0.2")));
    await until(() => l.pendingConnections + l.refusedConnections === 8, 2000);
    expect(l.pendingConnections).toBe(6);
    expect(l.refusedConnections).toBe(2);
    const closed = await Promise.all([...a, ...b].map((s) => closedWithin(s, 500)));
    expect(closed.filter(Boolean)).toHaveLength(2);
    // A welcomed connection leaves the pending count: a legitimate dialer still gets in
    // once the silent ones are gone.
    for (const s of [...a, ...b]) s.destroy();
    await until(() => l.pendingConnections === 0, 2000);
    const c = await dialSession({ port: l.port });
    cleanup.push(() => c.destroy());
    expect(l.pendingConnections).toBe(0);
  });

  it("drops a peer that sends nothing, or trickles its HELLO, at the handshake deadline", async () => {
    const l = await listen({ handshakeTimeoutMs: 300 });
    const silent = await rawConnect(l.port);
    const trickler = await rawConnect(l.port);
    const bytes = hello(randomBytes(16), false);
    let i = 0;
    const t = setInterval(() => {
      if (i < bytes.length && trickler.writable) trickler.write(bytes.subarray(i, ++i));
    }, 20);
    cleanup.push(() => clearInterval(t));
    const t0 = performance.now();
    const [a, b] = await Promise.all([closedWithin(silent, 2000), closedWithin(trickler, 2000)]);
    expect(a && b).toBe(true);
    expect(performance.now() - t0).toBeLessThan(1500);
    expect(i).toBeLessThan(bytes.length); // the trickle was cut off before its HELLO was whole
    await until(() => l.pendingConnections === 0, 1000);
  });

  it("refuses sessions over the listener's cap with REJECT 6", async () => {
    const l = await listen({ maxSessions: 2 });
    const s1 = await dialSession({ port: l.port });
    const s2 = await dialSession({ port: l.port });
    cleanup.push(
      () => s1.destroy(),
      () => s2.destroy(),
    );
    const err = await dialSession({ port: l.port }).catch((e) => e);
    expect(isNovaError(err, "NOVA_DWCP_HANDSHAKE")).toBe(true);
    expect(err.details.reason).toBe(RejectReason.BUSY);
  });
});

describe("DWCP JOIN authentication", () => {
  async function established() {
    const l = await listen();
    const [client, server] = await Promise.all([dialSession({ port: l.port, versions: [3] }), l.accept()]);
    cleanup.push(
      () => client.destroy(),
      () => server.destroy(),
    );
    return { l, client, server };
  }

  it("answers a JOIN that knows only the session id with a challenge, then REJECT 5", async () => {
    const { l, client, server } = await established();
    const sock = await rawConnect(l.port);
    sock.write(hello(client.sessionId, true));
    const challenge = await readHandshake(sock, 2000);
    expect(messageKind(challenge.message)).toBe(4);
    sock.write(encodeProof(client.sessionId, randomBytes(32)));
    const reply = decodeReply((await readHandshake(sock, 2000, challenge.rest)).message);
    expect(reply.accepted).toBe(false);
    expect(reply.reason).toBe(RejectReason.JOIN_UNAUTHORIZED);
    expect(server.streamCount).toBe(1);
  });

  it("delivers nothing from frames an unauthenticated JOIN sends with its HELLO", async () => {
    const { l, client, server } = await established();
    const sock = await rawConnect(l.port);
    const open = Buffer.from("evil");
    const frame = encodeHeader({ type: FrameType.OPEN, flags: 0, channel: 1, seq: 1, payload: open });
    sock.write(Buffer.concat([hello(client.sessionId, true), frame, open]));
    const first = await readHandshake(sock, 2000);
    expect(messageKind(first.message)).toBe(4);
    const reply = decodeReply((await readHandshake(sock, 2000, first.rest)).message);
    expect(reply.reason).toBe(RejectReason.JOIN_UNAUTHORIZED);
    expect(await closedWithin(sock, 2000)).toBe(true);
    // The real session still works, and its first channel is the dialer's, not the injected one.
    const got = server.accept();
    const ch = client.openChannel("real");
    await ch.send(Buffer.from("ok"));
    expect((await got).label).toBe("real");
  });

  it("refuses a recorded JOIN replayed on a new connection", async () => {
    const l = await listen();
    const written: Buffer[][] = [];
    const [client, server] = await Promise.all([
      dialSession({
        versions: [3],
        streams: 2,
        connect: async () => {
          const s = await tcpConnect("127.0.0.1", l.port, 2000);
          const mine: Buffer[] = [];
          written.push(mine);
          const write = s.write.bind(s) as (chunk: Buffer, ...rest: unknown[]) => boolean;
          s.write = ((chunk: Buffer, ...rest: unknown[]) => {
            mine.push(Buffer.from(chunk));
            return write(chunk, ...rest);
          }) as typeof s.write;
          return s;
        },
      }),
      l.accept(),
    ]);
    cleanup.push(
      () => client.destroy(),
      () => server.destroy(),
    );
    await until(() => server.streamCount === 2, 2000);
    const join = Buffer.concat(written[1]!).subarray(0, 2 * HANDSHAKE_BYTES);
    expect(join.readUInt8(4)).toBe(1);
    expect(decodeAuth(join.subarray(HANDSHAKE_BYTES), 5).sessionId.equals(client.sessionId)).toBe(true);
    const sock = await rawConnect(l.port);
    sock.write(join);
    const first = await readHandshake(sock, 2000);
    expect(messageKind(first.message)).toBe(4);
    const reply = decodeReply((await readHandshake(sock, 2000, first.rest)).message);
    expect(reply.accepted).toBe(false);
    expect(reply.reason).toBe(RejectReason.JOIN_UNAUTHORIZED);
    expect(server.streamCount).toBe(2);
  });
});

describe("DWCP bounds after the handshake", () => {
  it("ends a session that floods PINGs, and the listener's memory stays bounded", async () => {
    const l = await listen();
    const accepted = l.accept();
    const { sock } = await rawSession(l.port);
    const server = await accepted;
    const ping = Buffer.concat([
      encodeHeader({ type: FrameType.PING, flags: 0, channel: 0, seq: 0, payload: Buffer.alloc(8) }),
      Buffer.alloc(8),
    ]);
    // 64 KiB of back-to-back PINGs per write, and the flooder never reads a PONG.
    const burst = Buffer.concat(Array.from({ length: 65536 / ping.length }, () => ping));
    global.gc?.();
    const before = process.memoryUsage();
    let sent = 0;
    const t0 = performance.now();
    while (sock.writable && sent < 64 << 20 && performance.now() - t0 < 3000) {
      if (!sock.write(burst)) await new Promise((r) => setTimeout(r, 1));
      sent += burst.length;
    }
    const err = await server.closed;
    expect(isNovaError(err, "NOVA_DWCP_PROTOCOL")).toBe(true);
    expect((err as Error).message).toMatch(/PING/);
    expect(await closedWithin(sock, 3000)).toBe(true);
    const after = process.memoryUsage();
    // Unbounded PONG queues grew by hundreds of MiB here; what is left is noise.
    expect(after.rss - before.rss).toBeLessThan(96 << 20);
    expect(after.heapUsed + after.external - before.heapUsed - before.external).toBeLessThan(64 << 20);
  });

  it("ends a session whose peer opens more channels than the limit", async () => {
    const l = await listen({ tuning: { maxOpenChannels: 8 } });
    const accepted = l.accept();
    const { sock } = await rawSession(l.port);
    const server = await accepted;
    const label = Buffer.alloc(200_000, 0x61); // long labels: only 256 characters are kept
    for (let i = 0; i < 9; i++) {
      const open = { type: FrameType.OPEN, flags: 0, channel: 1 + 2 * i, seq: i + 1, payload: label };
      sock.write(Buffer.concat([encodeHeader(open), label]));
    }
    const err = await server.closed;
    expect(isNovaError(err, "NOVA_DWCP_PROTOCOL")).toBe(true);
    expect((err as Error).message).toMatch(/more than 8 channels/);
    // The channels opened before the limit were queued for accept(), with short labels.
    const first = await server.accept();
    expect(first.label).toBe("a".repeat(256));
  });

  it("drops a peer that does not read after the unread timeout", async () => {
    const l = await listen({ tuning: { peerUnreadTimeoutMs: 400 } });
    const accepted = l.accept();
    const { sock } = await rawSession(l.port);
    sock.pause(); // never reads: the listener's frames are never acknowledged
    const server = await accepted;
    const ch = server.openChannel("bulk");
    const t0 = performance.now();
    const sending = (async () => {
      const chunk = Buffer.alloc(1 << 20);
      for (let i = 0; i < 64; i++) await ch.send(chunk);
    })().catch((e) => e);
    const err = await server.closed;
    expect(isNovaError(err, "NOVA_DWCP_CONNECTION")).toBe(true);
    expect((err as Error).message).toMatch(/acknowledged nothing/);
    expect(performance.now() - t0).toBeLessThan(3000);
    expect(isNovaError(await sending, "NOVA_DWCP_CONNECTION")).toBe(true);
  });

  it("drops a connection whose send queue passes its bound", async () => {
    // PINGs allowed generously so that only the queue bound can stop the PONGs.
    const l = await listen({
      tuning: { maxConnectionQueueBytes: 1 << 20, peerPingBurst: 1e6, peerPingsPerSecond: 1e6 },
    });
    const accepted = l.accept();
    const { sock } = await rawSession(l.port);
    sock.pause();
    const server = await accepted;
    const payload = Buffer.alloc(128 << 10);
    const ping = Buffer.concat([
      encodeHeader({ type: FrameType.PING, flags: 0, channel: 0, seq: 0, payload }),
      payload,
    ]);
    const t0 = performance.now();
    while (server.streamCount > 0 && performance.now() - t0 < 5000) {
      if (!sock.write(ping)) await new Promise((r) => setTimeout(r, 1));
    }
    expect(server.streamCount).toBe(0);
    expect(await closedWithin(sock, 2000)).toBe(true);
  });
});

describe("DWCP keyed channel digest", () => {
  it("fails a channel with NOVA_DWCP_INTEGRITY when the sides' digest keys differ", async () => {
    // Two sessions over one TCP connection, built by hand with keys that do not match:
    // what an injected frame whose digest was recomputed without the key looks like.
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
    cleanup.push(() => new Promise<void>((r) => srv.close(() => r())));
    const port = (srv.address() as { port: number }).port;
    const [left, right] = await Promise.all([
      tcpConnect("127.0.0.1", port, 2000),
      new Promise<Socket>((r) => srv.once("connection", r)),
    ]);
    const keys = () => ({
      join: randomBytes(32),
      digestDialerToListener: randomBytes(32),
      digestListenerToDialer: randomBytes(32),
    });
    const params = {
      version: 3 as const,
      capabilities: 0,
      sessionId: randomBytes(16),
      peerWindowBytes: DEFAULT_TUNING.windowBytes,
      peerMaxPayload: DEFAULT_TUNING.maxPayload,
      tuning: { ...DEFAULT_TUNING },
    };
    const dialer = new DwcpSession({ ...params, role: "dialer", keys: keys() });
    const listener = new DwcpSession({ ...params, role: "listener", keys: keys() });
    cleanup.push(
      () => dialer.destroy(),
      () => listener.destroy(),
    );
    dialer.addConnection(left, Buffer.alloc(0));
    listener.addConnection(right, Buffer.alloc(0));
    const ch = dialer.openChannel("x");
    const rx = (async () => {
      const c = await listener.accept();
      for await (const _ of c) {
        // drain
      }
    })().catch((e) => e);
    await ch.send(Buffer.from("payload"));
    const ended = await ch.end().catch((e) => e);
    expect(isNovaError(await rx, "NOVA_DWCP_INTEGRITY")).toBe(true);
    expect(isNovaError(ended, "NOVA_DWCP_INTEGRITY")).toBe(true);
  });
});

describe.skipIf(!haveOpenssl())("DWCP mutual TLS", () => {
  const pki = haveOpenssl() ? makeTlsCluster(["a.test", "b.test", "c.test"]) : null;
  const foreign = haveOpenssl() ? makeTlsCluster(["b.test"]) : null;
  const serverTls = () => ({
    ca: pki!.ca,
    cert: pki!.leaves["a.test"]!.cert,
    key: pki!.leaves["a.test"]!.key,
    requestCert: true,
    rejectUnauthorized: true,
  });

  it("carries a multi-stream session when both certificates chain to the CA", async () => {
    const l = await listen({ tls: serverTls() });
    const [c, s] = await Promise.all([
      dialSession({
        port: l.port,
        streams: 3,
        tls: { ca: pki!.ca, ...pki!.leaves["b.test"]!, servername: "a.test" },
      }),
      l.accept(),
    ]);
    cleanup.push(
      () => c.destroy(),
      () => s.destroy(),
    );
    await until(() => s.streamCount === 3, 2000);
    // Welcomed TLS connections left the pre-handshake state (their deadline is off).
    expect(l.pendingConnections).toBe(0);
  });

  it("refuses a JOIN over another cluster certificate than the session's, before any challenge", async () => {
    const l = await listen({ tls: serverTls() });
    const [c, s] = await Promise.all([
      dialSession({
        port: l.port,
        versions: [3],
        tls: { ca: pki!.ca, ...pki!.leaves["b.test"]!, servername: "a.test" },
      }),
      l.accept(),
    ]);
    cleanup.push(
      () => c.destroy(),
      () => s.destroy(),
    );
    const raw = await tcpConnect("127.0.0.1", l.port, 2000);
    const other = await tlsClient(
      raw,
      { ca: pki!.ca, ...pki!.leaves["c.test"]!, servername: "a.test" },
      2000,
    );
    cleanup.push(() => {
      other.destroy();
    });
    other.write(hello(c.sessionId, true));
    const reply = decodeReply((await readHandshake(other, 2000)).message);
    expect(reply.accepted).toBe(false);
    expect(reply.reason).toBe(RejectReason.JOIN_UNAUTHORIZED);
    expect(s.streamCount).toBe(1);
  });

  it("refuses a client certificate from another CA, and a client without one", async () => {
    const l = await listen({ tls: serverTls() });
    const foreignErr = await dialSession({
      port: l.port,
      tls: { ca: pki!.ca, ...foreign!.leaves["b.test"]!, servername: "a.test" },
      handshakeTimeoutMs: 2000,
    }).catch((e) => e);
    expect(isNovaError(foreignErr, "NOVA_DWCP_HANDSHAKE")).toBe(true);
    const anonErr = await dialSession({
      port: l.port,
      tls: { ca: pki!.ca, servername: "a.test" },
      handshakeTimeoutMs: 2000,
    }).catch((e) => e);
    expect(isNovaError(anonErr, "NOVA_DWCP_HANDSHAKE")).toBe(true);
    expect(l.sessionCount).toBe(0);
  });

  it("drops a peer that offers no TLS", async () => {
    const l = await listen({ tls: serverTls() });
    const sock = await rawConnect(l.port);
    sock.write(hello(randomBytes(16), false, newKeyShare().publicKey));
    expect(await closedWithin(sock, 2000)).toBe(true);
    const err = await dialSession({ port: l.port, handshakeTimeoutMs: 2000 }).catch((e) => e);
    expect(isNovaError(err, "NOVA_DWCP_HANDSHAKE")).toBe(true);
    expect(l.sessionCount).toBe(0);
  });
});
