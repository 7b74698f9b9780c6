/**
 * The migration relay end to end inside one process: a DWCP session over loopback, the
 * recorded QEMU 7.2 stream written into the source relay's socket as QEMU would, and a
 * plain TCP server standing in for the destination QEMU's incoming socket. The real-QEMU
 * version is test/migration-dwcp.slow.test.ts.
 */
import { createHash } from "node:crypto";
import { mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import net, { type Socket } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { dialSession } from "../../dwcp/amst/dial.js";
import { DwcpListener } from "../../dwcp/amst/listen.js";
import type { DwcpSession } from "../../dwcp/amst/session.js";
import { PageCache } from "../../dwcp/hde/page-cache.js";
import { ByteRelaySource, ByteRelayTarget } from "./byte-relay.js";
import { ChannelRouter } from "./channel-router.js";
import { MigrationRelaySource } from "./relay-source.js";
import { MigrationRelayTarget } from "./relay-target.js";
import { connectLocal, type LocalEndpoint, listenLocal } from "./socket-io.js";
import { fixtureLayout, readFixture } from "./stream-fixture.test-util.js";

const fixture = readFixture();
const sha = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

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

async function migrate(cache: PageCache | null, label: string) {
  const incoming = await fakeIncoming(Buffer.from("RP"));
  const target = new MigrationRelayTarget({ router, label, qemu: incoming.endpoint, cache });
  const source = await MigrationRelaySource.start({ session: src, label });
  const returned: Buffer[] = [];
  await fakeOutgoing(source.endpoint, fixture, returned);
  const [s, t, got] = await Promise.all([source.done, target.done, incoming.received]);
  return { s, t, got, returned: Buffer.concat(returned) };
}

describe("migration relay over DWCP (recorded QEMU 7.2 stream, in-process)", () => {
  it("rebuilds the stream byte for byte, pages through HDE, return path back, verified end to end", async () => {
    const cache = new PageCache(path.join(dir, "cache"), 64 << 20);
    const { s, t, got, returned } = await migrate(cache, "mig");
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
    const first = await migrate(cache, "mig-1");
    const second = await migrate(cache, "mig-2");
    expect(sha(second.got)).toBe(sha(fixture));
    expect(first.s.stats.pages.full + first.s.stats.pages.delta).toBeGreaterThan(0);
    expect(second.s.stats.pages.ref).toBe(second.s.stats.pages.total - second.s.stats.pages.zero);
    expect(second.s.hde.bytesOut).toBeLessThan(first.s.hde.bytesOut / 5);
    cache.close();
  });

  it("fails safe when the destination cache lost pages it announced: nothing wrong reaches QEMU", async () => {
    const cachePath = path.join(dir, "cache");
    const cache = new PageCache(cachePath, 64 << 20);
    await migrate(cache, "warm");
    cache.close();
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
    const { ramEnd } = fixtureLayout(fixture);
    const foo = Buffer.from([0x01, 0, 0, 0, 9, 3, 0x66, 0x6f, 0x6f, 0, 0, 0, 0, 0, 0, 0, 1]);
    const data =
      kind === "unknown"
        ? Buffer.concat([fixture.subarray(0, ramEnd), foo, fixture.subarray(ramEnd)])
        : fixture.subarray(0, fixture.indexOf(Buffer.from([0x7e, 0, 0, 0, 2, 0x02])) + 5 + 5 + 8 + 7 + 2000);
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

  it("forwards TCP connections both ways over a channel (NBD traffic)", async () => {
    const echo = net.createServer((s) => s.pipe(s));
    await new Promise<void>((r) => echo.listen(0, "127.0.0.1", () => r()));
    const port = (echo.address() as net.AddressInfo).port;
    const target = new ByteRelayTarget({ router, label: "nbd", target: { port } });
    const relay = await ByteRelaySource.start({ session: src, label: "nbd" });
    const s = await connectLocal(relay.endpoint);
    const payload = Buffer.concat([fixture, Buffer.alloc(300_000, 7)]);
    const back: Buffer[] = [];
    s.on("data", (d: Buffer) => back.push(d));
    const ended = new Promise<void>((r) => s.on("end", () => r()));
    s.end(payload);
    await ended;
    expect(sha(Buffer.concat(back))).toBe(sha(payload));
    await relay.close();
    await target.idle();
    expect(relay.stats.bytesIn).toBe(payload.length);
    expect(relay.stats.bytesOut).toBeLessThan(payload.length);
    expect(target.error).toBeNull();
    echo.close();
  });
});
