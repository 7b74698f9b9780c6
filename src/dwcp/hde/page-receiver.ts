/**
 * The receiving side of an HDE page stream (docs/dwcp.md §7): announces its cache
 * inventory, rebuilds every page (zero, full, reference from the cache, delta against a
 * cached base), verifies each page's hash and the stream digest, asks the sender again
 * for pages it could not resolve (evicted or corrupted cache), and only then reports
 * success. It never writes a page whose content does not match the sender's hash.
 *
 * With HDE worker threads (worker-pool.ts), batches are decompressed and their full pages
 * hashed there, a bounded number at a time, while this loop applies finished batches in
 * the order they arrived; cache, digest and sink are only ever touched here.
 */

import { NovaError } from "../../lib/errors.js";
import type { Channel } from "../amst/channel.js";
import { decodeBatch, decodeRecords, MAX_PAGE_NO, Msg, Op, type PageRecord } from "./batch.js";
import { BoundedDecompressor } from "./codec.js";
import { PageDigest } from "./digest.js";
import { OrderedSteps, pipelineFor } from "./ordered-steps.js";
import { HASH_BYTES, pageHash, ZERO_HASH, ZERO_PAGE } from "./page.js";
import type { PageCache } from "./page-cache.js";
import { sendInventory } from "./receiver-mirror.js";
import type { HdeWorkerPool } from "./worker-pool.js";
import { xbzrleDecode } from "./xbzrle.js";

/** Batches smaller than this are decoded inline: a worker round trip (100-200 µs) costs more than they do. */
export const MIN_OFFLOAD_MESSAGE = 64 * 1024;

/** Where rebuilt pages go. Zero pages are passed as the shared ZERO_PAGE buffer. */
export interface PageSink {
  /**
   * `hash` is the page's verified 16-byte content hash (ZERO_HASH for a zero page), so a
   * sink that records pages (a PageHistory) does not hash them a second time. The
   * receiver never reuses either buffer, so a sink may keep them. Sinks written for the
   * two-argument form keep working.
   */
  write(pageNo: number, page: Buffer, hash: Buffer): void | Promise<void>;
}

/** Receiver options. */
export interface PageReceiverOptions {
  /** The persistent page cache, or null for none (every page then travels in full). */
  cache: PageCache | null;
  sink: PageSink;
  /** Largest uncompressed section A accepted. @defaultValue 8 MiB */
  maxBatchBytes?: number;
  /** Prefixes per inventory message. @defaultValue 65536 */
  inventoryChunk?: number;
  /**
   * false: announce an empty inventory, because the sender shares a mirror of this cache
   * that another channel announced (receiver-mirror.ts). @defaultValue true
   */
  announce?: boolean;
  /**
   * Worker threads that decompress batches and hash their pages; 0 threads (or null)
   * works inline. @defaultValue HdeWorkerPool.shared()
   */
  pool?: HdeWorkerPool | null;
  /** Batches read and not yet applied, at most. @defaultValue 2 per pool thread, at least 2; 1 inline */
  maxBatchesInFlight?: number;
}

/** A batch's records; `hashes` (16 bytes per full page, in order) when a worker computed them. */
interface DecodedBatch {
  records: PageRecord[];
  hashes: Buffer | null;
}

/** What a received page stream did. */
export interface PageReceiveStats {
  pages: number;
  zero: number;
  full: number;
  ref: number;
  delta: number;
  /** References or delta bases the cache could not supply (asked for again). */
  misses: number;
}

/** Decodes one HDE page stream from a channel. */
export class PageReceiver {
  private readonly dec = new BoundedDecompressor();
  private readonly digest = new PageDigest();
  private readonly needs = new Map<number, Buffer>();
  private readonly maxBatch: number;
  /** Counters. */
  readonly stats: PageReceiveStats = { pages: 0, zero: 0, full: 0, ref: 0, delta: 0, misses: 0 };
  private readonly pool: HdeWorkerPool | null;
  /** Batches read and not yet applied, applied in order. */
  private readonly applies: OrderedSteps;
  private failure: Error | null = null;

  constructor(
    private readonly channel: Channel,
    private readonly options: PageReceiverOptions,
  ) {
    this.maxBatch = options.maxBatchBytes ?? 8 * 1024 * 1024;
    const { pool, maxInFlight } = pipelineFor(options.pool, options.maxBatchesInFlight);
    this.pool = pool;
    this.applies = new OrderedSteps(maxInFlight, () => this.failure !== null);
  }

  /** Runs the whole exchange; resolves when every page is verified and written. */
  async run(): Promise<PageReceiveStats> {
    try {
      await this.sendInventory();
      await this.receivePages();
      await this.requestFills();
      await this.channel.end();
      if ((await this.channel.read()) !== null)
        throw new NovaError("NOVA_DWCP_PROTOCOL", "HDE sender sent data after FILLS_END");
      return { ...this.stats };
    } catch (err) {
      // A batch that failed to apply aborted the channel; its error, not the abort, is the cause.
      const cause = this.failure ?? err;
      if (this.channel.error === null)
        this.channel.abort(cause instanceof Error ? cause.message : String(cause));
      throw cause;
    }
  }

  private async sendInventory(): Promise<void> {
    await sendInventory(this.channel, this.options.cache, {
      chunkPrefixes: this.options.inventoryChunk,
      announce: this.options.announce,
    });
  }

  private async receivePages(): Promise<void> {
    for (;;) {
      const m = await this.channel.read();
      if (m === null) throw new NovaError("NOVA_DWCP_PROTOCOL", "HDE sender ended before PAGES_END");
      if (m[0] === Msg.BATCH) {
        await this.queueBatch(m);
        continue;
      }
      await this.applies.idle();
      if (this.failure) throw this.failure;
      if (m[0] !== Msg.PAGES_END || m.length !== 41)
        throw new NovaError("NOVA_DWCP_PROTOCOL", `Unexpected HDE message ${m[0]}`);
      const pages = Number(m.readBigUInt64BE(1));
      const theirs = m.subarray(9);
      if (pages !== this.digest.pages || !theirs.equals(this.digest.digest())) {
        throw new NovaError("NOVA_DWCP_INTEGRITY", "HDE page stream digest mismatch", {
          details: { expectedPages: pages, receivedPages: this.digest.pages },
        });
      }
      return;
    }
  }

  /** Decodes a batch (on a worker when there is a pool) and queues it to be applied in order. */
  private async queueBatch(m: Buffer): Promise<void> {
    let decoded: Promise<DecodedBatch>;
    if (!this.pool || m.length < MIN_OFFLOAD_MESSAGE) {
      try {
        decoded = Promise.resolve({ records: decodeBatch(m, this.dec, this.maxBatch), hashes: null });
      } catch (err) {
        decoded = Promise.reject(err);
      }
    } else {
      decoded = this.pool
        .decode(m, this.maxBatch)
        .then((d) => ({ records: decodeRecords(d.a, d.b), hashes: d.hashes }));
    }
    decoded.catch(() => undefined);
    await this.applies.add(
      async () => {
        const batch = await decoded;
        if (this.failure) return;
        let full = 0;
        for (const r of batch.records) {
          let h: Buffer | null = null;
          if (batch.hashes && (r.op === Op.FULL || r.op === Op.FULL_B)) {
            h = batch.hashes.subarray(full * HASH_BYTES, (full + 1) * HASH_BYTES);
            full++;
          }
          await this.apply(r, h);
        }
      },
      (err) => {
        if (this.failure) return;
        this.failure = err instanceof Error ? err : new NovaError("NOVA_INTERNAL", String(err));
        // The read loop may be waiting for a message the sender will not send until this
        // side makes progress: aborting wakes it.
        if (this.channel.error === null) this.channel.abort(this.failure.message);
      },
    );
    if (this.failure) throw this.failure;
  }

  /** Applies one record; `fullHash` is a full page's hash when a worker already computed it. */
  private async apply(r: PageRecord, fullHash: Buffer | null = null): Promise<void> {
    this.stats.pages++;
    const sink = this.options.sink;
    const cache = this.options.cache;
    switch (r.op) {
      case Op.ZERO:
        this.digest.add(r.pageNo, ZERO_HASH);
        this.needs.delete(r.pageNo);
        this.stats.zero++;
        await sink.write(r.pageNo, ZERO_PAGE, ZERO_HASH);
        return;
      case Op.FULL:
      case Op.FULL_B: {
        const h = fullHash ?? pageHash(r.page);
        this.digest.add(r.pageNo, h);
        this.needs.delete(r.pageNo);
        this.stats.full++;
        cache?.put(h, r.page);
        await sink.write(r.pageNo, r.page, h);
        return;
      }
      case Op.REF: {
        const hash = Buffer.from(r.hash);
        this.digest.add(r.pageNo, hash);
        this.stats.ref++;
        const page = cache?.get(hash) ?? null;
        if (!page) return this.miss(r.pageNo, hash);
        this.needs.delete(r.pageNo);
        await sink.write(r.pageNo, page, hash);
        return;
      }
      case Op.DELTA: {
        const target = Buffer.from(r.target);
        this.digest.add(r.pageNo, target);
        this.stats.delta++;
        const base = cache?.get(r.base) ?? null;
        if (!base) return this.miss(r.pageNo, target);
        const page = xbzrleDecode(base, r.delta);
        if (!pageHash(page).equals(target)) {
          throw new NovaError(
            "NOVA_DWCP_INTEGRITY",
            `Page ${r.pageNo} rebuilt from a delta does not match its hash`,
          );
        }
        this.needs.delete(r.pageNo);
        cache?.put(target, page);
        await sink.write(r.pageNo, page, target);
        return;
      }
    }
  }

  private miss(pageNo: number, expected: Buffer): void {
    this.stats.misses++;
    this.needs.set(pageNo, expected);
  }

  private async requestFills(): Promise<void> {
    const list = [...this.needs.keys()];
    const per = 8192;
    for (let i = 0; i < list.length; i += per) {
      const part = list.slice(i, i + per);
      const m = Buffer.allocUnsafe(1 + part.length * 6);
      m.writeUInt8(Msg.NEED, 0);
      for (const [j, n] of part.entries()) m.writeUIntBE(n, 1 + j * 6, 6);
      await this.channel.send(m);
    }
    await this.channel.send(Buffer.from([Msg.NEED_END]));
    for (;;) {
      const m = await this.channel.read();
      if (m === null) throw new NovaError("NOVA_DWCP_PROTOCOL", "HDE sender ended before FILLS_END");
      if (m[0] === Msg.FILLS_END) break;
      if (m[0] !== Msg.BATCH)
        throw new NovaError("NOVA_DWCP_PROTOCOL", `Unexpected HDE message ${m[0]} during fills`);
      for (const r of decodeBatch(m, this.dec, this.maxBatch)) {
        if ((r.op !== Op.FULL && r.op !== Op.FULL_B) || r.pageNo > MAX_PAGE_NO) {
          throw new NovaError("NOVA_DWCP_PROTOCOL", "HDE fill is not a full page");
        }
        const expected = this.needs.get(r.pageNo);
        if (!expected)
          throw new NovaError("NOVA_DWCP_PROTOCOL", `HDE fill for page ${r.pageNo}, which was not needed`);
        const h = pageHash(r.page);
        if (!h.equals(expected.subarray(0, HASH_BYTES))) {
          throw new NovaError(
            "NOVA_DWCP_INTEGRITY",
            `Refilled page ${r.pageNo} does not match the hash first announced`,
          );
        }
        this.needs.delete(r.pageNo);
        this.options.cache?.put(h, r.page);
        await this.options.sink.write(r.pageNo, r.page, h);
      }
    }
    if (this.needs.size > 0) {
      throw new NovaError("NOVA_DWCP_INTEGRITY", `${this.needs.size} pages were never resolved`, {
        details: { missing: this.needs.size },
      });
    }
  }
}
