/**
 * HDE page streams over the WAN emulator: exact rebuild under loss, the second send of a
 * changed image in a fraction of the bytes, and a receiver whose cache was evicted or
 * corrupted (detected, falls back to full pages, still exact). Skips when not root.
 */
import { closeSync, mkdtempSync, openSync, rmSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dialSession } from "../src/dwcp/amst/dial.js";
import { DwcpListener } from "../src/dwcp/amst/listen.js";
import { PageHistory } from "../src/dwcp/hde/history.js";
import { PAGE_SIZE } from "../src/dwcp/hde/page.js";
import { PageCache } from "../src/dwcp/hde/page-cache.js";
import { PageReceiver } from "../src/dwcp/hde/page-receiver.js";
import { PageSender } from "../src/dwcp/hde/page-sender.js";
import { DwcpMetrics } from "../src/dwcp/metrics.js";
import { Tuner } from "../src/dwcp/tuner.js";
import { SyntheticImage } from "../src/testing/synthetic-image.js";
import { dwcpTestTls } from "../src/testing/tls-fixtures.js";
import { ADDR_A, WanLink } from "../src/testing/wanem/link.js";
import { emulatorUnavailableReason } from "../src/testing/wanem/netns.js";

const unavailable = emulatorUnavailableReason();
if (unavailable) console.warn(`Skipping DWCP HDE emulator suite: ${unavailable}`);

describe.skipIf(unavailable !== null)("HDE over an emulated WAN link", () => {
  let link: WanLink;
  let dir: string;
  let port = 47400;
  const registry = new Registry();
  const metrics = new DwcpMetrics(registry);

  beforeAll(async () => {
    link = await WanLink.create({ spec: "rate=100mbit,rtt=30ms,loss=0.5%", cc: "cubic" });
    dir = mkdtempSync("/tmp/nc-dwcp-hde-");
  });
  afterAll(async () => {
    await link?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function send(image: SyntheticImage, cacheBytes: number, history: PageHistory | null) {
    const p = port++;
    const a = await link.sockets("a");
    const b = await link.sockets("b");
    const listener = await DwcpListener.listen({ server: await a.listen(p), tls: dwcpTestTls().listen });
    const [client, server] = await Promise.all([
      dialSession({ connect: () => b.connect(ADDR_A, p), tls: dwcpTestTls().dial }),
      listener.accept(),
    ]);
    const cache = new PageCache(join(dir, "cache"), cacheBytes);
    let mismatches = 0;
    let written = 0;
    try {
      const rx = (async () =>
        new PageReceiver(await server.accept(), {
          cache,
          sink: {
            write: (n, page) => {
              written++;
              if (!page.equals(image.page(n))) mismatches++;
            },
          },
        }).run())();
      const sender = new PageSender(client.openChannel("mem"), {
        source: { readPage: (n) => image.page(n) },
        history,
      });
      await sender.start();
      const tuner = new Tuner(client, [sender.zstd], { metrics });
      const buf = Buffer.allocUnsafe(PAGE_SIZE);
      for (let n = 0; n < image.pageCount; n++) await sender.writePage(n, image.page(n, buf));
      const sent = await sender.finish();
      const received = await rx;
      tuner.stop();
      metrics.recordPages(sent);
      return { sent, received, wire: client.stats().bytesWritten, mismatches, written };
    } finally {
      cache.close();
      await cache.whenClosed();
      await client.close().catch(() => undefined);
      await listener.close();
    }
  }

  it("rebuilds an image exactly under loss, then sends a 10 %-changed version in under 15 % of the bytes", async () => {
    const history = new PageHistory(new PageCache(join(dir, "history"), 64 << 20));
    const v1 = new SyntheticImage({ pages: 4096, seed: 11 });
    const first = await send(v1, 64 << 20, history);
    expect(first.mismatches).toBe(0);
    expect(first.written).toBe(4096);
    const v2 = new SyntheticImage({ pages: 4096, seed: 11, changedFraction: 0.1 });
    const second = await send(v2, 64 << 20, history);
    expect(second.mismatches).toBe(0);
    expect(second.written).toBe(4096);
    expect(second.wire / first.wire).toBeLessThan(0.15);
    const text = await registry.metrics();
    expect(text).toMatch(/novacron_dwcp_mode\{mode="(internet|hybrid|datacenter)"\} 1/);
    // Pass 2: every unchanged non-zero page is a reference.
    expect(second.sent.ref / second.sent.pages).toBeGreaterThan(0.5);
    expect(text).toContain(`novacron_dwcp_hde_dedup_ratio ${second.sent.ref / second.sent.pages}`);
  });

  it("detects a corrupted receiver cache and falls back to full pages, still exact", async () => {
    const data = join(dir, "cache", "pages.dat");
    const fd = openSync(data, "r+");
    for (let off = 0; off < statSync(data).size; off += 2 * PAGE_SIZE)
      writeSync(fd, Buffer.from("bitrot"), 0, 6, off + 100);
    closeSync(fd);
    const v1 = new SyntheticImage({ pages: 4096, seed: 11 });
    const r = await send(v1, 64 << 20, null);
    expect(r.mismatches).toBe(0);
    expect(r.written).toBe(4096);
    expect(r.received.misses).toBeGreaterThan(500);
    expect(r.sent.refilled).toBe(r.received.misses);
  });

  it("respects a cache too small for the image: the mirror never references an evicted page", async () => {
    const v3 = new SyntheticImage({ pages: 4096, seed: 12 });
    const r = await send(v3, 256 * PAGE_SIZE, null);
    expect(r.mismatches).toBe(0);
    expect(r.received.misses).toBe(0);
  });
});
