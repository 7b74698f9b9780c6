/**
 * The migration relay end to end inside one process: a DWCP session over loopback, the
 * recorded QEMU 7.2 and 10.0 streams (and NBD mirror clients) written into the source
 * relay's socket as QEMU would, and a plain TCP server standing in for the destination
 * QEMU's incoming socket (or NBD export). The real-QEMU version is
 * test/migration-dwcp.slow.test.ts.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { dialSession } from "../../dwcp/amst/dial.js";
import { DwcpListener } from "../../dwcp/amst/listen.js";
import type { DwcpSession } from "../../dwcp/amst/session.js";
import { PageHistory } from "../../dwcp/hde/history.js";
import { PageCache } from "../../dwcp/hde/page-cache.js";
import { readInventory, sendInventory } from "../../dwcp/hde/receiver-mirror.js";
import { waitFor } from "../../lib/wait.js";
import { ChannelRouter } from "./channel-router.js";
import {
  chunkReply,
  errorPayload,
  greeting as nbdGreeting,
  Opt,
  option,
  optionReply,
  request,
} from "./nbd-frames.test-util.js";
import { NbdRelaySource, NbdRelayTarget } from "./nbd-relay.js";
import { NbdCmd } from "./nbd-replies.js";
import { NbdRequestSplitter } from "./nbd-splitter.js";
import { MigrationRelaySource } from "./relay-source.js";
import { MigrationRelayTarget } from "./relay-target.js";
import { connectLocal, type LocalEndpoint, listenLocal } from "./socket-io.js";
import { fixtureLayout, NBD_FIXTURES, STREAM_FIXTURES } from "./stream-fixture.test-util.js";

const sha = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

/** An NBD client stream with every request's cookie zeroed (the relay gives its own). */
function withoutCookies(stream: Buffer): Buffer {
  const splitter = new NbdRequestSplitter(() => 0n);
  const events = splitter.push(Buffer.from(stream));
  events.push(...splitter.end().events);
  return Buffer.concat(events.map((e) => e.data));
}

let dir: string;
let listener: DwcpListener;
let src: DwcpSession;
let dst: DwcpSession;
let router: ChannelRouter;

beforeEach(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "nc-relay-"));
  listener = await DwcpListener.listen({ port: 0 });
  const accepted = listener.accept();
  src = await dialSession({ port: listener.port });
  dst = await accepted;
  router = new ChannelRouter(dst);
});

afterEach(async () => {
  src.destroy();
  dst.destroy();
  await listener.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A TCP server standing in for the destination QEMU: collects the stream, optionally answers. */
async function fakeIncoming(reply?: Buffer): Promise<{ endpoint: LocalEndpoint; received: Promise<Buffer> }> {
  let resolve!: (b: Buffer) => void;
  const received = new Promise<Buffer>((r) => {
    resolve = r;
  });
  const { server, endpoint } = await listenLocal({ port: 0 }, (s: Socket) => {
    const parts: Buffer[] = [];
    if (reply) s.write(reply);
    s.on("data", (d: Buffer) => parts.push(d));
    s.on("end", () => {
      resolve(Buffer.concat(parts));
      s.end();
      server.close();
    });
    s.on("error", () => undefined);
  });
  return { endpoint, received };
}

/** Writes `data` into the relay as QEMU's outgoing migration would, in uneven chunks. */
async function fakeOutgoing(ep: LocalEndpoint, data: Buffer, returned?: Buffer[]): Promise<void> {
  const s = await connectLocal(ep);
  s.on("data", (d: Buffer) => returned?.push(d));
  for (let off = 0, i = 0; off < data.length; i++) {
    const n = [1, 7, 4096, 65_536, 333][i % 5]!;
    s.write(data.subarray(off, off + n));
    off += n;
  }
  await new Promise<void>((resolve) => s.end(resolve));
}

async function migrate(fixture: Buffer, cache: PageCache | null, label: string) {
  const incoming = await fakeIncoming(Buffer.from("RP"));
  const target = new MigrationRelayTarget({ router, label, qemu: incoming.endpoint, cache });
  const source = await MigrationRelaySource.start({ session: src, label });
  const returned: Buffer[] = [];
  await fakeOutgoing(source.endpoint, fixture, returned);
  const [s, t, got] = await Promise.all([source.done, target.done, incoming.received]);
  return { s, t, got, returned: Buffer.concat(returned) };
}

describe.each(STREAM_FIXTURES)("migration relay over DWCP (recorded $qemu stream, in-process)", (fx) => {
  const fixture = fx.data;

  it("rebuilds the stream byte for byte, pages through HDE, return path back, verified end to end", async () => {
    const cache = new PageCache(path.join(dir, "cache"), 64 << 20);
    const { s, t, got, returned } = await migrate(fixture, cache, "mig");
    expect(sha(got)).toBe(sha(fixture));
    expect(returned.toString()).toBe("RP");
    expect(s.stats.logicalBytes).toBe(fixture.length);
    expect(s.stats.pages.total).toBe(10);
    expect(s.stats.qemuZeroPages).toBe(30);
    expect(s.stats.parserMode).toBe("tail");
    expect(s.stats.deliveredBytes).toBe(fixture.length);
    expect(t.bytes).toBe(fixture.length);
    expect(t.pages).toBe(10);
    expect(s.stats.wireBytes).toBeLessThan(fixture.length);
    cache.close();
  });

  it("sends references the second time: the destination cache is warm", async () => {
    const cache = new PageCache(path.join(dir, "cache"), 64 << 20);
    const first = await migrate(fixture, cache, "mig-1");
    const second = await migrate(fixture, cache, "mig-2");
    expect(sha(second.got)).toBe(sha(fixture));
    expect(first.s.stats.pages.full + first.s.stats.pages.delta).toBeGreaterThan(0);
    expect(second.s.stats.pages.ref).toBe(second.s.stats.pages.total - second.s.stats.pages.zero);
    expect(second.s.hde.bytesOut).toBeLessThan(first.s.hde.bytesOut / 5);
    cache.close();
  });

  it("fails safe when the destination cache lost pages it announced: nothing wrong reaches QEMU", async () => {
    const cachePath = path.join(dir, "cache");
    const cache = new PageCache(cachePath, 64 << 20);
    await migrate(fixture, cache, "warm");
    cache.close();
    // A write still in flight would land after ours and undo the damage.
    await cache.whenClosed();
    // Overwrite every cached page on disk: the index still announces them.
    const fd = openSync(path.join(cachePath, "pages.dat"), "r+");
    writeSync(fd, Buffer.alloc(64 * 4096, 0xa5), 0, 64 * 4096, 0);
    const reopened = new PageCache(cachePath, 64 << 20);
    const incoming = await fakeIncoming();
    const target = new MigrationRelayTarget({
      router,
      label: "cold",
      qemu: incoming.endpoint,
      cache: reopened,
    });
    const source = await MigrationRelaySource.start({ session: src, label: "cold" });
    await fakeOutgoing(source.endpoint, fixture).catch(() => undefined);
    await expect(target.done).rejects.toMatchObject({ code: "NOVA_MIGRATION_RELAY" });
    await expect(source.done).rejects.toThrow();
    const got = await incoming.received;
    // What QEMU got is an exact prefix of the stream: cut short, never wrong.
    expect(got.length).toBeLessThan(fixture.length);
    expect(got.equals(fixture.subarray(0, got.length))).toBe(true);
    reopened.close();
  });

  it.each([
    ["an unknown live section (the splitter falls back to opaque)", "unknown"],
    ["a truncated stream (QEMU's connection ended mid-page)", "truncated"],
  ])("carries %s byte for byte", async (_what, kind) => {
    const { ramEnd, firstPart } = fixtureLayout(fixture);
    const foo = Buffer.from([0x01, 0, 0, 0, 9, 3, 0x66, 0x6f, 0x6f, 0, 0, 0, 0, 0, 0, 0, 1]);
    const data =
      kind === "unknown"
        ? Buffer.concat([fixture.subarray(0, ramEnd), foo, fixture.subarray(ramEnd)])
        : fixture.subarray(0, firstPart + 5 + 8 + 7 + 2000);
    const incoming = await fakeIncoming();
    const target = new MigrationRelayTarget({ router, label: kind, qemu: incoming.endpoint, cache: null });
    const source = await MigrationRelaySource.start({ session: src, label: kind });
    await fakeOutgoing(source.endpoint, data);
    const [s, t, got] = await Promise.all([source.done, target.done, incoming.received]);
    expect(sha(got)).toBe(sha(data));
    expect(s.stats.logicalBytes).toBe(data.length);
    if (kind === "unknown") {
      expect(s.stats.parserMode).toBe("fallback");
      expect(s.stats.parserReason).toBe('live section "foo" is not RAM');
      expect(t.truncated).toBe(false);
    } else {
      expect(s.stats.parserMode).toBe("parsing");
      expect(t.truncated).toBe(true);
      expect(s.truncated).toBe(true);
    }
  });
});

describe("NBD relay over DWCP (in-process)", () => {
  it("keeps what the destination sends before the stream's socket is attached (an NBD greeting)", async () => {
    const greeting = Buffer.from("NBDMAGIC-greeting", "latin1");
    const { server, endpoint } = await listenLocal({ port: 0 }, (s: Socket) => {
      s.write(greeting);
      s.on("data", () => undefined);
      s.on("end", () => s.end());
    });
    const target = new MigrationRelayTarget({
      router,
      label: "early",
      qemu: endpoint,
      cache: null,
      connectAtStart: true,
    });
    const relay = await MigrationRelaySource.open({ session: src, label: "early" });
    // The greeting reaches the source before any local connection exists.
    await waitFor(() => relay.stats().returnBytes === greeting.length || undefined, {
      timeoutMs: 10_000,
      what: "the greeting at the source",
    });
    const { server: local, endpoint: localEp } = await listenLocal({ port: 0 }, (s: Socket) =>
      relay.attach(s),
    );
    const client = await connectLocal(localEp);
    const got: Buffer[] = [];
    client.on("data", (d: Buffer) => got.push(d));
    await waitFor(() => Buffer.concat(got).length >= greeting.length || undefined, {
      timeoutMs: 10_000,
      what: "the greeting at the client",
    });
    expect(Buffer.concat(got).equals(greeting)).toBe(true);
    client.end(Buffer.from([0, 0, 0, 1]));
    await Promise.all([relay.done, target.done]);
    local.close();
    server.close();
  });

  it.each([
    ["compact", false],
    ["extended (QEMU ≥ 8.2 client and server)", true],
  ])(
    "relays NBD connections (%s requests) and sends disk blocks the destination caches as references",
    async (_form, extended) => {
      // A stand-in NBD server: greets first (as NBD servers do), then records what it is sent.
      const greeting = Buffer.from("NBDMAGICIHAVEOPT\u0000\u0003", "latin1");
      const received: Promise<Buffer>[] = [];
      const { server, endpoint } = await listenLocal({ port: 0 }, (s: Socket) => {
        s.write(greeting);
        const parts: Buffer[] = [];
        s.on("data", (d: Buffer) => parts.push(d));
        received.push(new Promise((r) => s.on("end", () => r(Buffer.concat(parts)))));
        s.on("end", () => s.end());
      });
      const cache = new PageCache(path.join(dir, "cache"), 64 * 1024 * 1024);
      const history = new PageHistory(new PageCache(path.join(dir, "history"), 64 * 1024 * 1024));
      // One inventory for the session, shared by every connection's sender.
      const inventorySent = router.take("inv").then((ch) => sendInventory(ch, cache));
      const mirror = await readInventory(src.openChannel("inv"), { slack: 16 });
      await inventorySent;
      const target = new NbdRelayTarget({ router, target: endpoint, cache, announce: false });
      const relay = await NbdRelaySource.start({ session: src, mirror, history });

      const disk = Buffer.concat([
        randomBytes(512 * 1024),
        Buffer.alloc(128 * 1024),
        randomBytes(384 * 1024),
      ]);
      const writeReq = Buffer.alloc(extended ? 32 : 28);
      writeReq.writeUInt32BE(extended ? 0x21e41c71 : 0x25609513, 0);
      writeReq.writeUInt16BE(1, 6);
      writeReq.writeBigUInt64BE(1n << 20n, 16);
      if (extended) writeReq.writeBigUInt64BE(BigInt(disk.length), 24);
      else writeReq.writeUInt32BE(disk.length, 24);
      const clientStream = Buffer.concat([Buffer.from([0, 0, 0, 1]), writeReq, disk]);
      const connect = async (): Promise<Buffer> => {
        const s = await connectLocal(relay.endpoint);
        const back: Buffer[] = [];
        const greeted = new Promise<void>((r) =>
          s.on("data", (d: Buffer) => {
            back.push(d);
            if (Buffer.concat(back).length >= greeting.length) r();
          }),
        );
        await greeted;
        const ended = new Promise<void>((r) => s.on("end", () => r()));
        s.end(clientStream);
        await ended;
        return Buffer.concat(back);
      };
      expect((await connect()).equals(greeting)).toBe(true);
      const first = relay.stats();
      expect(withoutCookies(await received[0]!).equals(withoutCookies(clientStream))).toBe(true);
      expect((await connect()).equals(greeting)).toBe(true);
      expect(withoutCookies(await received[1]!).equals(withoutCookies(clientStream))).toBe(true);
      await relay.close();
      await target.idle();
      expect(target.error).toBeNull();
      expect(relay.error).toBeNull();
      const both = relay.stats();
      expect(first.pages).toMatchObject({ total: 256, zero: 32, full: 224, ref: 0 });
      expect(both.fallbacks).toEqual([]);
      expect(first.wireBytes).toBeGreaterThan(896 * 1024);
      // The second time every non-zero block is in the destination's cache.
      expect(both.pages.ref - first.pages.ref).toBe(224);
      expect(both.wireBytes - first.wireBytes).toBeLessThan(first.wireBytes * 0.05);
      server.close();
    },
  );

  it.each(NBD_FIXTURES)("relays $qemu's recorded mirror client: its aligned writes as pages", async (fx) => {
    const received: Promise<Buffer>[] = [];
    const { server, endpoint } = await listenLocal({ port: 0 }, (s: Socket) => {
      const parts: Buffer[] = [];
      s.on("data", (d: Buffer) => parts.push(d));
      received.push(new Promise((r) => s.on("end", () => r(Buffer.concat(parts)))));
      s.on("end", () => s.end());
    });
    const target = new NbdRelayTarget({ router, target: endpoint, cache: null });
    const relay = await NbdRelaySource.start({ session: src });
    await fakeOutgoing(relay.endpoint, fx.data);
    await relay.close();
    await target.idle();
    expect(relay.error).toBeNull();
    expect(target.error).toBeNull();
    // Byte for byte but the cookies, which the relay gives every request (its own, unique).
    const got = await received[0]!;
    expect(sha(withoutCookies(got))).toBe(sha(withoutCookies(fx.data)));
    expect(got.length).toBe(fx.data.length);
    const stats = relay.stats();
    expect(stats.fallbacks).toEqual([]);
    expect(stats.logicalBytes).toBe(fx.data.length);
    expect(stats.pages.total).toBe(fx.pageNos.length);
    server.close();
  });

  describe("flushes answered at the source", () => {
    const HANDSHAKE = 4 + 16 + 16;
    const FLUSH = request(NbdCmd.FLUSH, 1n, { extended: true });
    const DISC = request(NbdCmd.DISC, 2n, { extended: true });

    /**
     * An NBD export stand-in (extended headers) that answers the flush only when told, under
     * the cookie it received (the relay's own, not the client's).
     */
    async function holdingExport(answer: (cookie: bigint) => Buffer) {
      let got = Buffer.alloc(0);
      let replied = false;
      let discBeforeReply: boolean | null = null;
      let sock: Socket | null = null;
      const { server, endpoint } = await listenLocal({ port: 0 }, (s: Socket) => {
        sock = s;
        s.write(nbdGreeting());
        s.on("data", (d: Buffer) => {
          const before = got.length;
          got = Buffer.concat([got, d]);
          if (before < HANDSHAKE && got.length >= HANDSHAKE)
            s.write(Buffer.concat([optionReply(Opt.EXTENDED_HEADERS, 1), optionReply(Opt.GO, 1)]));
          if (discBeforeReply === null && got.length >= HANDSHAKE + FLUSH.length + DISC.length)
            discBeforeReply = !replied;
        });
        s.on("end", () => s.end());
        s.on("error", () => undefined);
      });
      /** The cookie of the request whose header starts `at` bytes into what arrived. */
      const cookieAt = (at: number): bigint => got.readBigUInt64BE(at + 8);
      return {
        endpoint,
        receivedBytes: () => got.length,
        discBeforeReply: () => discBeforeReply,
        cookieAt,
        write: (b: Buffer) => sock!.write(b),
        answer: () => {
          replied = true;
          sock!.write(answer(cookieAt(HANDSHAKE)));
        },
        close: () => server.close(),
      };
    }

    /** The source QEMU's side: handshake, one flush; resolves with the flush's answer. */
    async function flushingClient(ep: LocalEndpoint) {
      const s = await connectLocal(ep);
      let back = Buffer.alloc(0);
      s.on("data", (d: Buffer) => (back = Buffer.concat([back, d])));
      const upTo = (n: number, what: string) =>
        waitFor(() => back.length >= n || undefined, { timeoutMs: 10_000, what });
      await upTo(18, "the greeting");
      s.write(Buffer.concat([Buffer.from([0, 0, 0, 3]), option(Opt.EXTENDED_HEADERS), option(Opt.GO)]));
      await upTo(18 + 40, "the option replies");
      s.write(FLUSH);
      await upTo(18 + 40 + 32, "the flush's answer");
      return {
        answer: back.subarray(18 + 40),
        disconnect: () => s.end(DISC),
        send: (b: Buffer) => s.write(b),
        back: () => back.subarray(18 + 40 + 32),
      };
    }

    it("answers at once; the destination's relay finishes only after its export answered", async () => {
      const exp = await holdingExport((c) => chunkReply(c, { extended: true }));
      const target = new NbdRelayTarget({ router, target: exp.endpoint, cache: null });
      const relay = await NbdRelaySource.start({ session: src });
      const client = await flushingClient(relay.endpoint);
      // The client has its answer while the export has not answered (it cannot have: it
      // answers only when told).
      expect(client.answer.equals(chunkReply(1n, { extended: true }))).toBe(true);
      await waitFor(() => exp.receivedBytes() >= HANDSHAKE + FLUSH.length || undefined, {
        timeoutMs: 10_000,
        what: "the flush at the export",
      });
      client.disconnect();
      // Everything but DISC's last byte reaches the export; DISC waits for the answer.
      await waitFor(() => exp.receivedBytes() >= HANDSHAKE + FLUSH.length + DISC.length - 1 || undefined, {
        timeoutMs: 10_000,
        what: "the client's bytes at the export",
      });
      expect(relay.stats().flushes).toEqual({ answered: 1, confirmed: 0 });
      exp.answer();
      await relay.close();
      await target.idle();
      expect(exp.discBeforeReply()).toBe(false);
      expect(relay.error).toBeNull();
      expect(target.error).toBeNull();
      expect(relay.stats().flushes).toEqual({ answered: 1, confirmed: 1 });
      exp.close();
    });

    it("fails both ends when the export's real flush fails", async () => {
      const exp = await holdingExport((c) =>
        chunkReply(c, { extended: true, type: 0x8001, payload: errorPayload(5) }),
      );
      const target = new NbdRelayTarget({ router, target: exp.endpoint, cache: null });
      const relay = await NbdRelaySource.start({ session: src });
      const client = await flushingClient(relay.endpoint);
      expect(client.answer.equals(chunkReply(1n, { extended: true }))).toBe(true);
      exp.answer();
      client.disconnect();
      await relay.close();
      await target.idle();
      expect(target.error?.message).toMatch(
        /failed a flush the source had answered \(request \d+, error 5\)/,
      );
      expect(relay.error).not.toBeNull();
      exp.close();
    });

    it("keeps a reused cookie unambiguous: the export answers the next request first", async () => {
      const exp = await holdingExport((c) => chunkReply(c, { extended: true }));
      const target = new NbdRelayTarget({ router, target: exp.endpoint, cache: null });
      const relay = await NbdRelaySource.start({ session: src });
      const client = await flushingClient(relay.endpoint);
      // QEMU's client reuses a cookie once it has the answer: a write under cookie 1.
      const write = request(NbdCmd.WRITE, 1n, {
        extended: true,
        offset: 8192,
        payload: Buffer.alloc(4096, 9),
      });
      client.send(write);
      await waitFor(() => exp.receivedBytes() >= HANDSHAKE + FLUSH.length + write.length || undefined, {
        timeoutMs: 10_000,
        what: "the flush and the write at the export",
      });
      // Two requests under two cookies at the export: the relay's own.
      const [flushCookie, writeCookie] = [exp.cookieAt(HANDSHAKE), exp.cookieAt(HANDSHAKE + FLUSH.length)];
      expect(flushCookie).not.toBe(writeCookie);
      // The write is answered before the flush; the client gets the write's answer under
      // its own cookie, and the flush's real answer is taken for the flush.
      exp.write(chunkReply(writeCookie, { extended: true, offset: 8192 }));
      await waitFor(() => client.back().length >= 32 || undefined, {
        timeoutMs: 10_000,
        what: "the write's answer",
      });
      expect(client.back().equals(chunkReply(1n, { extended: true, offset: 8192 }))).toBe(true);
      exp.answer();
      client.disconnect();
      await relay.close();
      await target.idle();
      expect(relay.error).toBeNull();
      expect(target.error).toBeNull();
      expect(relay.stats().flushes).toEqual({ answered: 1, confirmed: 1 });
      expect(client.back().length).toBe(32);
      exp.close();
    });
  });
});
