/**
 * DWCP over the WAN emulator: integrity under loss, connections killed mid-transfer,
 * stream adaptation, version negotiation and hostile peers, with real kernel TCP between
 * two network namespaces. Skips with a message when not root.
 */
import { createHash, randomBytes } from "node:crypto";
import type { Socket } from "node:net";
import { crc32 } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dialSession } from "../src/dwcp/amst/dial.js";
import { DwcpListener } from "../src/dwcp/amst/listen.js";
import type { DwcpSession } from "../src/dwcp/amst/session.js";
import { Tuner } from "../src/dwcp/tuner.js";
import { encodeFrame, encodeHeader, FRAME_HEADER_BYTES, FrameType } from "../src/dwcp/wire/frame.js";
import { isNovaError } from "../src/lib/errors.js";
import { dwcpTestTls } from "../src/testing/tls-fixtures.js";
import { ADDR_A, WanLink } from "../src/testing/wanem/link.js";
import { emulatorUnavailableReason } from "../src/testing/wanem/netns.js";

const unavailable = emulatorUnavailableReason();
if (unavailable) console.warn(`Skipping DWCP emulator suite: ${unavailable}`);

let nextPort = 47200;

/**
 * Bytes a hostile peer might send after a good handshake: valid frames with random bytes
 * flipped, frames far outside the window, data for a channel never opened, or a header
 * announcing an oversized payload. Each must end the session with NOVA_DWCP_PROTOCOL.
 */
function hostileStream(i: number): Buffer {
  const open = { type: FrameType.OPEN, flags: 0, channel: 1, seq: 1, payload: Buffer.from("x") };
  const data = {
    type: FrameType.DATA,
    flags: 0,
    channel: 1,
    seq: 2,
    chseq: 1,
    payload: randomBytes(1 + (i % 3000)),
  };
  switch (i % 4) {
    case 0: {
      const b = Buffer.concat([encodeFrame(open), encodeFrame(data)]);
      for (let k = 0; k < 1 + (i % 5); k++) {
        const at = Math.floor(Math.random() * b.length);
        b.writeUInt8(b.readUInt8(at) ^ (1 + Math.floor(Math.random() * 255)), at);
      }
      return b;
    }
    case 1:
      return encodeFrame({ ...data, seq: 10_000_000 });
    case 2:
      return encodeFrame({ ...data, channel: 3, seq: 1 });
    default: {
      const h = encodeHeader({ ...data, payload: Buffer.alloc(0) });
      h.writeUInt32BE(64 * 1024 * 1024, 4);
      h.writeUInt32BE(crc32(h.subarray(0, FRAME_HEADER_BYTES - 4)), FRAME_HEADER_BYTES - 4);
      return h;
    }
  }
}

describe.skipIf(unavailable !== null)("DWCP over an emulated lossy WAN link", () => {
  let link: WanLink;
  const open: { close(): Promise<void> | void }[] = [];

  beforeAll(async () => {
    link = await WanLink.create({ spec: "rate=80mbit,rtt=40ms,loss=1%", cc: "cubic" });
  });
  afterAll(async () => {
    for (const o of open.reverse()) await o.close();
    await link?.close();
  });

  async function pair(
    opts: { streams?: number; clientVersions?: (1 | 3)[]; serverVersions?: (1 | 3)[]; tuning?: object } = {},
  ) {
    const port = nextPort++;
    const a = await link.sockets("a");
    const b = await link.sockets("b");
    const listener = await DwcpListener.listen({
      server: await a.listen(port),
      versions: opts.serverVersions ?? [1, 3],
      tuning: opts.tuning ?? {},
      tls: dwcpTestTls().listen,
    });
    open.push(listener);
    const [client, server] = await Promise.all([
      dialSession({
        connect: () => b.connect(ADDR_A, port),
        streams: opts.streams ?? 1,
        versions: opts.clientVersions ?? [1, 3],
        tuning: opts.tuning ?? {},
        tls: dwcpTestTls().dial,
      }),
      listener.accept(),
    ]);
    open.push({ close: () => client.destroy() });
    return { client, server };
  }

  async function receiveAll(session: DwcpSession): Promise<{ digest: string; bytes: number }> {
    const ch = await session.accept();
    const h = createHash("sha256");
    let bytes = 0;
    for await (const m of ch) {
      h.update(m);
      bytes += m.length;
    }
    return { digest: h.digest("hex"), bytes };
  }

  it("delivers every byte intact over 1 % loss with several streams", async () => {
    const { client, server } = await pair({ streams: 4 });
    const rx = receiveAll(server);
    const ch = client.openChannel("bulk");
    const h = createHash("sha256");
    for (let i = 0; i < 48; i++) {
      const m = randomBytes(256 * 1024);
      h.update(m);
      await ch.send(m);
    }
    await ch.end();
    expect(await rx).toEqual({ digest: h.digest("hex"), bytes: 48 * 256 * 1024 });
  });

  it("survives connections killed mid-transfer: nothing lost, nothing duplicated, digest verified", async () => {
    const { client, server } = await pair({ streams: 3, tuning: { windowBytes: 8 << 20 } });
    const rx = receiveAll(server);
    const ch = client.openChannel("bulk");
    const h = createHash("sha256");
    for (let i = 0; i < 80; i++) {
      const m = randomBytes(128 * 1024);
      h.update(m);
      await ch.send(m);
      if (i === 20) client.connectionSockets()[1]!.destroy();
      if (i === 50) server.connectionSockets()[0]!.destroy();
    }
    await ch.end();
    expect(await rx).toEqual({ digest: h.digest("hex"), bytes: 80 * 128 * 1024 });
    const stats = client.stats();
    expect(stats.connectionsReplaced).toBeGreaterThanOrEqual(1);
    expect(stats.framesResent).toBeGreaterThan(0);
  });

  it("adds streams while goodput improves on a loss-limited path", async () => {
    // A small window keeps the final drain short once the producer stops.
    const { client, server } = await pair({ streams: 1, tuning: { windowBytes: 2 << 20 } });
    const rx = receiveAll(server);
    const tuner = new Tuner(client, [], { streamBounds: [1, 8], initialStreams: 1, intervalMs: 400 });
    const ch = client.openChannel("bulk");
    const chunk = randomBytes(256 * 1024);
    // Each decision averages 2 s of samples and a noisy one sends the climb back to hold,
    // so wait for the third stream with a generous bound rather than a fixed time.
    const until = performance.now() + 40_000;
    let maxStreams = 1;
    while (maxStreams < 3 && performance.now() < until) {
      await ch.send(chunk);
      maxStreams = Math.max(maxStreams, client.streamCount);
    }
    await ch.end();
    tuner.stop();
    await rx;
    expect(maxStreams).toBeGreaterThanOrEqual(3);
  });

  it("negotiates v3, falls back to v1 with a v1-only peer, and fails clearly on no common version", async () => {
    const v3 = await pair({ streams: 2 });
    expect(v3.client.version).toBe(3);
    const v1 = await pair({ clientVersions: [1], streams: 2 });
    expect(v1.client.version).toBe(1);
    expect(v1.server.streamCount).toBe(1);
    const rx = receiveAll(v1.server);
    const ch = v1.client.openChannel("ctl");
    await ch.send(Buffer.from("v1 works"));
    await ch.end();
    expect((await rx).bytes).toBe(8);

    const port = nextPort++;
    const a = await link.sockets("a");
    const b = await link.sockets("b");
    const listener = await DwcpListener.listen({
      server: await a.listen(port),
      versions: [3],
      tls: dwcpTestTls().listen,
    });
    open.push(listener);
    const err = await dialSession({
      connect: () => b.connect(ADDR_A, port),
      versions: [1],
      tls: dwcpTestTls().dial,
    }).catch((e) => e);
    expect(isNovaError(err, "NOVA_DWCP_VERSION")).toBe(true);
  });

  it("fails fast with a typed error against a peer that is not DWCP or never answers", async () => {
    const a = await link.sockets("a");
    const b = await link.sockets("b");
    const httpPort = nextPort++;
    const http = await a.listen(httpPort);
    http.on("connection", (s: Socket) => s.end("HTTP/1.1 400 Bad Request\r\n\r\n"));
    const silentPort = nextPort++;
    const silent = await a.listen(silentPort);
    const held: Socket[] = [];
    silent.on("connection", (s: Socket) => held.push(s));
    open.push({
      close: () => {
        http.close();
        silent.close();
        for (const s of held) s.destroy();
      },
    });

    const t0 = performance.now();
    const e1 = await dialSession({ connect: () => b.connect(ADDR_A, httpPort) }).catch((e) => e);
    expect(isNovaError(e1, "NOVA_DWCP_HANDSHAKE")).toBe(true);
    expect(e1.message).toMatch(/not a DWCP endpoint/);
    expect(performance.now() - t0).toBeLessThan(2000);
    const e2 = await dialSession({
      connect: () => b.connect(ADDR_A, silentPort),
      handshakeTimeoutMs: 1500,
    }).catch((e) => e);
    expect(isNovaError(e2, "NOVA_DWCP_HANDSHAKE")).toBe(true);
    expect(e2.message).toMatch(/within 1500 ms/);
  });

  it("ends sessions with protocol errors, never a crash, when a peer sends mutated frames (time-bounded fuzz)", async () => {
    const port = nextPort++;
    const a = await link.sockets("a");
    const b = await link.sockets("b");
    const listener = await DwcpListener.listen({ server: await a.listen(port), tls: dwcpTestTls().listen });
    open.push(listener);
    const deadline = performance.now() + 4000;
    let sessions = 0;
    let protocolErrors = 0;
    while (performance.now() < deadline) {
      const [client, server] = await Promise.all([
        dialSession({ connect: () => b.connect(ADDR_A, port), tls: dwcpTestTls().dial }),
        listener.accept(),
      ]);
      sessions++;
      const sock = client.connectionSockets()[0]!;
      sock.write(hostileStream(sessions));
      const err = await Promise.race([
        server.closed,
        new Promise((r) => setTimeout(() => r("timeout"), 3000)),
      ]);
      if (isNovaError(err, "NOVA_DWCP_PROTOCOL")) protocolErrors++;
      client.destroy();
    }
    expect(sessions).toBeGreaterThan(3);
    expect(protocolErrors).toBe(sessions);
  });
});
