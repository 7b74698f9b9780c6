import { closeSync, mkdtempSync, openSync, rmSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { SyntheticImage } from "../../testing/synthetic-image.js";
import { dialSession } from "../amst/dial.js";
import { DwcpListener } from "../amst/listen.js";
import { PageHistory } from "./history.js";
import { PAGE_SIZE } from "./page.js";
import { PageCache } from "./page-cache.js";
import { PageReceiver } from "./page-receiver.js";
import { PageSender } from "./page-sender.js";

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

function tmp(): string {
  const d = mkdtempSync("/tmp/nc-dwcp-hde-");
  cleanup.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** Sends `image` over a fresh loopback session; returns the rebuilt pages and stats. */
async function transfer(image: SyntheticImage, cacheDir: string, history: PageHistory | null) {
  const listener = await DwcpListener.listen();
  const [client, server] = await Promise.all([
    dialSession({ port: listener.port, streams: 2 }),
    listener.accept(),
  ]);
  const cache = new PageCache(cacheDir, 64 << 20);
  const out = new Map<number, Buffer>();
  try {
    const rx = (async () => {
      const ch = await server.accept();
      return new PageReceiver(ch, {
        cache,
        sink: { write: (n, p) => void out.set(n, Buffer.from(p)) },
      }).run();
    })();
    const sender = new PageSender(client.openChannel("mem"), {
      source: { readPage: (n) => image.page(n) },
      history,
    });
    await sender.start();
    const page = Buffer.allocUnsafe(PAGE_SIZE);
    for (let n = 0; n < image.pageCount; n++) await sender.writePage(n, image.page(n, page));
    const sent = await sender.finish();
    const received = await rx;
    return { out, sent, received, wire: client.stats().bytesWritten };
  } finally {
    cache.close();
    await cache.whenClosed();
    await client.close().catch(() => undefined);
    await listener.close();
  }
}

function expectImage(out: Map<number, Buffer>, image: SyntheticImage): void {
  expect(out.size).toBe(image.pageCount);
  for (let n = 0; n < image.pageCount; n++) {
    if (!out.get(n)!.equals(image.page(n))) throw new Error(`page ${n} differs`);
  }
}

describe("HDE page streams", () => {
  it("rebuilds the image exactly, then sends a 10 % changed version in a fraction of the bytes", async () => {
    const cacheDir = tmp();
    const history = new PageHistory(new PageCache(join(tmp(), "sent"), 64 << 20));
    const v1 = new SyntheticImage({ pages: 2048 });
    const first = await transfer(v1, cacheDir, history);
    expectImage(first.out, v1);
    expect(first.sent.zero).toBeGreaterThan(300);
    expect(first.wire).toBeLessThan(v1.bytes * 0.6);

    const v2 = new SyntheticImage({ pages: 2048, changedFraction: 0.1 });
    const second = await transfer(v2, cacheDir, history);
    expectImage(second.out, v2);
    expect(second.sent.ref).toBeGreaterThan(1000);
    expect(second.sent.delta).toBeGreaterThan(100);
    expect(second.wire / first.wire).toBeLessThan(0.15);
  });

  it("falls back to full pages when the receiver's cache was corrupted or lost", async () => {
    const cacheDir = tmp();
    const v1 = new SyntheticImage({ pages: 1024, seed: 5 });
    await transfer(v1, cacheDir, null);
    const data = join(cacheDir, "pages.dat");
    const fd = openSync(data, "r+");
    const size = statSync(data).size;
    for (let off = 0; off < size; off += 3 * PAGE_SIZE)
      writeSync(fd, Buffer.from("corrupted!"), 0, 10, off + 17);
    closeSync(fd);
    const again = await transfer(v1, cacheDir, null);
    expectImage(again.out, v1);
    expect(again.received.misses).toBeGreaterThan(50);
    expect(again.sent.refilled).toBe(again.received.misses);

    rmSync(cacheDir, { recursive: true, force: true });
    const fresh = await transfer(v1, cacheDir, null);
    expectImage(fresh.out, v1);
    expect(fresh.sent.ref).toBeLessThan(50);
  });
});
