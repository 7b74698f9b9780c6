import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { isNovaError, NovaError } from "../../lib/errors.js";
import { SyntheticImage } from "../../testing/synthetic-image.js";
import type { Channel } from "../amst/channel.js";
import { dialSession } from "../amst/dial.js";
import { DwcpListener } from "../amst/listen.js";
import { Msg } from "./batch.js";
import { exitingWorkerUrl, testWorkerUrl } from "./hde-worker.test-util.js";
import { PageHistory } from "./history.js";
import { PAGE_SIZE, pageHash } from "./page.js";
import { PageCache } from "./page-cache.js";
import { PageReceiver } from "./page-receiver.js";
import { PageSender } from "./page-sender.js";
import { HdeWorkerPool } from "./worker-pool.js";

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});
function pool(threads: number, workerUrl = testWorkerUrl()): HdeWorkerPool {
  const p = new HdeWorkerPool({ threads, workerUrl });
  cleanup.push(() => p.close());
  return p;
}
function tmp(): string {
  const d = mkdtempSync("/tmp/nc-dwcp-hde-pipe-");
  cleanup.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/**
 * A channel for a PageSender alone: an empty inventory and no NEEDs come in, every sent
 * message is kept, and sends resolve only while `open` (credit) allows.
 */
class RecordingChannel {
  readonly sent: Buffer[] = [];
  error: Error | null = null;
  aborted: string | null = null;
  open = true;
  private readonly incoming = [Buffer.from([Msg.INVENTORY, 0, 0, 0, 0]), Buffer.from([Msg.INVENTORY_END])];
  private held: (() => void)[] = [];

  async read(): Promise<Buffer | null> {
    if (this.error) throw this.error;
    return this.incoming.shift() ?? null;
  }
  async send(m: Buffer): Promise<void> {
    if (this.error) throw this.error;
    if (!this.open) await new Promise<void>((r) => this.held.push(r));
    this.sent.push(Buffer.from(m));
    if (m[0] === Msg.PAGES_END) this.incoming.push(Buffer.from([Msg.NEED_END]));
  }
  release(): void {
    this.open = true;
    for (const r of this.held.splice(0)) r();
  }
  async end(): Promise<void> {}
  abort(reason: string): void {
    this.aborted = reason;
    this.error = new NovaError("NOVA_DWCP_CLOSED", reason);
    this.release();
  }
}

/** Sends `image` (then its changed version) through a PageSender on a RecordingChannel. */
async function encodeAll(images: SyntheticImage[], p: HdeWorkerPool | null): Promise<Buffer[]> {
  const history = new PageHistory(new PageCache(join(tmp(), "sent"), 64 << 20));
  cleanup.push(() => history.store.close());
  const out: Buffer[] = [];
  for (const image of images) {
    const ch = new RecordingChannel();
    const sender = new PageSender(ch as unknown as Channel, {
      source: { readPage: (n) => image.page(n) },
      history,
      pool: p,
      level: 3,
    });
    await sender.start();
    const page = Buffer.allocUnsafe(PAGE_SIZE);
    for (let n = 0; n < image.pageCount; n++) await sender.writePage(n, image.page(n, page));
    await sender.finish();
    out.push(...ch.sent);
  }
  return out;
}

describe("HDE page streams on worker threads", () => {
  it("put the same messages on the wire, in the same order, as inline encoding", async () => {
    const images = [
      new SyntheticImage({ pages: 3000, seed: 9 }),
      new SyntheticImage({ pages: 3000, seed: 9, changedFraction: 0.1 }),
    ];
    const inline = await encodeAll(images, null);
    const pooled = await encodeAll(images, pool(2));
    expect(pooled.length).toBe(inline.length);
    expect(inline.length).toBeGreaterThan(20);
    for (let i = 0; i < inline.length; i++) expect(pooled[i]!.equals(inline[i]!), `message ${i}`).toBe(true);
  });

  it("keep at most maxBatchesInFlight batches unsent", async () => {
    const ch = new RecordingChannel();
    const image = new SyntheticImage({ pages: 4096, seed: 3 });
    const sender = new PageSender(ch as unknown as Channel, {
      source: { readPage: (n) => image.page(n) },
      pool: pool(1),
      maxBatchesInFlight: 3,
      batchPages: 64,
    });
    await sender.start();
    ch.open = false;
    let written = 0;
    const writing = (async () => {
      for (let n = 0; n < image.pageCount; n++) {
        await sender.writePage(n, image.page(n));
        written++;
      }
    })();
    await new Promise((r) => setTimeout(r, 300));
    // Blocked sends: the sender stops after 3 batches in flight (the 4th is being built).
    expect(ch.sent.length).toBe(0);
    expect(written).toBeLessThanOrEqual(4 * 64);
    expect(written).toBeGreaterThanOrEqual(3 * 64 - 1);
    ch.release();
    await writing;
    await sender.finish();
    expect(ch.sent.filter((m) => m[0] === Msg.BATCH).length).toBe(image.pageCount / 64);
  });

  it("wake every caller waiting for a slot when flush() is called concurrently", async () => {
    const ch = new RecordingChannel();
    const image = new SyntheticImage({ pages: 256, seed: 5 });
    const sender = new PageSender(ch as unknown as Channel, {
      source: { readPage: (n) => image.page(n) },
      pool: pool(1),
      maxBatchesInFlight: 1,
      batchPages: 1024,
    });
    await sender.start();
    ch.open = false;
    const flushes: Promise<void>[] = [];
    for (let part = 0; part < 4; part++) {
      for (let n = part * 64; n < (part + 1) * 64; n++) await sender.writePage(n, image.page(n));
      flushes.push(sender.flush());
    }
    ch.release();
    await Promise.all(flushes);
    await sender.finish();
    expect(ch.sent.filter((m) => m[0] === Msg.BATCH).length).toBe(4);
  });

  it("fail the sender with NOVA_DWCP_WORKER and abort its channel when a worker dies", async () => {
    const ch = new RecordingChannel();
    const image = new SyntheticImage({ pages: 2048, seed: 4 });
    const sender = new PageSender(ch as unknown as Channel, {
      source: { readPage: (n) => image.page(n) },
      pool: pool(1, exitingWorkerUrl()),
    });
    await sender.start();
    const err = await (async () => {
      for (let n = 0; n < image.pageCount; n++) await sender.writePage(n, image.page(n));
      await sender.finish();
    })().catch((e: unknown) => e);
    expect(isNovaError(err) && err.code).toBe("NOVA_DWCP_WORKER");
    expect(ch.aborted).toMatch(/HDE worker/);
  });

  it("rebuild the image exactly over a session when both ends use the pool", async () => {
    const p = pool(2);
    const listener = await DwcpListener.listen();
    const [client, server] = await Promise.all([
      dialSession({ port: listener.port, streams: 2 }),
      listener.accept(),
    ]);
    cleanup.push(async () => {
      await client.close().catch(() => undefined);
      await listener.close();
    });
    const cache = new PageCache(tmp(), 64 << 20);
    cleanup.push(() => cache.close());
    const image = new SyntheticImage({ pages: 4096, seed: 11 });
    const out = new Map<number, Buffer>();
    let badHashes = 0;
    const rx = (async () =>
      new PageReceiver(await server.accept(), {
        cache,
        pool: p,
        sink: {
          write: (n, pg, h) => {
            // The sink is handed the verified hash, so it need not hash again.
            if (!h.equals(pageHash(pg))) badHashes++;
            out.set(n, Buffer.from(pg));
          },
        },
      }).run())();
    const sender = new PageSender(client.openChannel("mem"), {
      source: { readPage: (n) => image.page(n) },
      pool: p,
    });
    await sender.start();
    for (let n = 0; n < image.pageCount; n++) await sender.writePage(n, image.page(n));
    const sent = await sender.finish();
    const received = await rx;
    expect(received.full).toBe(sent.full);
    expect(badHashes).toBe(0);
    for (let n = 0; n < image.pageCount; n++)
      if (!out.get(n)!.equals(image.page(n))) throw new Error(`page ${n} differs`);
  });

  it("fail the receiver with NOVA_DWCP_WORKER, not a hang, when its worker dies", async () => {
    const listener = await DwcpListener.listen();
    const [client, server] = await Promise.all([
      dialSession({ port: listener.port, streams: 2 }),
      listener.accept(),
    ]);
    cleanup.push(async () => {
      await client.close().catch(() => undefined);
      await listener.close();
    });
    const image = new SyntheticImage({ pages: 2048, seed: 12 });
    const rx = (async () =>
      new PageReceiver(await server.accept(), {
        cache: null,
        pool: pool(1, exitingWorkerUrl()),
        sink: { write: () => undefined },
      }).run())();
    rx.catch(() => undefined);
    const sender = new PageSender(client.openChannel("mem"), {
      source: { readPage: (n) => image.page(n) },
      pool: null,
    });
    await sender.start();
    const sending = (async () => {
      for (let n = 0; n < image.pageCount; n++) await sender.writePage(n, image.page(n));
      await sender.finish();
    })();
    sending.catch(() => undefined);
    const err = await rx.catch((e: unknown) => e);
    expect(isNovaError(err) && err.code).toBe("NOVA_DWCP_WORKER");
    await expect(sending).rejects.toThrow();
  });
});
