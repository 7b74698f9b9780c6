/**
 * The sending side of an HDE page stream (docs/dwcp.md §7): applies the hierarchy
 * zero -> dedup reference -> XBZRLE delta -> zstd to each page, batches records, and
 * runs the channel protocol: read the receiver's cache inventory, stream batches, answer
 * the receiver's NEED list with full pages, and confirm the page digest.
 *
 * Batches are encoded (zstd) on the process's HDE worker threads when there are any
 * (worker-pool.ts): a bounded number of batches is in flight at once and they go out in
 * the order they were built, so the wire and every record's meaning are those of inline
 * encoding; everything that depends on order (mirror, history, digest) stays here.
 */

import { NovaError } from "../../lib/errors.js";
import type { Channel } from "../amst/channel.js";
import { assembleBatch, BatchBuilder, Msg } from "./batch.js";
import { BatchCompressor } from "./codec.js";
import { PageDigest } from "./digest.js";
import type { PageHistory } from "./history.js";
import { hashKeyParts } from "./lru-index.js";
import { OrderedSteps, pipelineFor } from "./ordered-steps.js";
import { HASH_BYTES, isZeroPage, looksCompressible, PAGE_SIZE, pageHash, ZERO_HASH } from "./page.js";
import { type MirrorAccess, ReceiverMirror, readInventory } from "./receiver-mirror.js";
import type { HdeWorkerPool } from "./worker-pool.js";
import { xbzrleEncode } from "./xbzrle.js";

/**
 * Section A below this is compressed inline: a worker round trip (two thread hops and a
 * wake-up) measured 100-200 µs of CPU on the 2-vCPU bench host, against ~260 µs for
 * zstd level 3 on 64 KiB and ~55 µs on 4 KiB (docs/benchmarks.md, "Every core").
 */
export const MIN_OFFLOAD_BYTES = 64 * 1024;

/** Where fills for the receiver's NEED list are read from. */
export interface PageSource {
  readPage(pageNo: number): Buffer | Promise<Buffer>;
}

/** Something that releases bytes at an allocated rate, e.g. a LinkShare transfer. */
export interface Pacer {
  acquire(bytes: number): Promise<void>;
}

/** Sender options. */
export interface PageSenderOptions {
  /** Re-reads pages the receiver could not resolve. */
  source: PageSource;
  /** zstd level to start with (0 = off); see level.ts. @defaultValue 3 */
  level?: number;
  /** Previous versions of pages, for deltas; null disables deltas. @defaultValue null */
  history?: PageHistory | null;
  /** Records per batch. @defaultValue 256 */
  batchPages?: number;
  /** Largest XBZRLE delta worth sending (bytes). @defaultValue 2048 */
  deltaLimit?: number;
  /** Use references (dedup). @defaultValue true */
  dedup?: boolean;
  /** Shares the link with other transfers (pba/link-share.ts): waited on before each batch. */
  pacer?: Pacer;
  /** Largest mirror of the receiver's cache, in pages (~28 bytes each). @defaultValue 2^20 (a 4 GiB cache) */
  maxMirrorPages?: number;
  /**
   * A mirror of the receiver's cache that other streams into the same cache share
   * (receiver-mirror.ts); the receiver then announces an empty inventory on this channel.
   */
  mirror?: ReceiverMirror;
  /**
   * Worker threads that encode batches; a pool of 0 threads (or null) encodes inline.
   * @defaultValue HdeWorkerPool.shared()
   */
  pool?: HdeWorkerPool | null;
  /**
   * Batches built but not yet handed to the channel, at most. 1 is inline encoding's
   * behaviour (flush() resolves once the batch is sent). @defaultValue 2 per pool thread, at least 2; 1 inline
   */
  maxBatchesInFlight?: number;
}

/** What a page stream did. */
export interface PageSendStats {
  pages: number;
  zero: number;
  full: number;
  ref: number;
  delta: number;
  /** Pages the receiver asked for again (its cache lost or corrupted them). */
  refilled: number;
  /** Bytes of page data presented. */
  bytesIn: number;
  /** Bytes of HDE messages sent (before transport framing). */
  bytesOut: number;
}

/** Encodes pages onto a channel. Call start(), then writePage() for each page, then finish(). */
export class PageSender {
  /** What the receiver's cache holds. */
  private mirror: MirrorAccess = ReceiverMirror.empty();
  private readonly builder = new BatchBuilder();
  private readonly compressor: BatchCompressor;
  private readonly digest = new PageDigest();
  private readonly batchPages: number;
  private readonly deltaLimit: number;
  private readonly history: PageHistory | null;
  private readonly dedup: boolean;
  private started = false;
  /** Counters. */
  readonly stats: PageSendStats = {
    pages: 0,
    zero: 0,
    full: 0,
    ref: 0,
    delta: 0,
    refilled: 0,
    bytesIn: 0,
    bytesOut: 0,
  };
  private pendingDigest: [number, Buffer][] = [];
  private readonly pool: HdeWorkerPool | null;
  /** Batches built and not yet sent, sent in order. */
  private readonly sends: OrderedSteps;
  private failure: Error | null = null;

  constructor(
    private readonly channel: Channel,
    private readonly options: PageSenderOptions,
  ) {
    this.compressor = new BatchCompressor(options.level ?? 3);
    this.batchPages = options.batchPages ?? 256;
    this.deltaLimit = options.deltaLimit ?? 2048;
    this.history = options.history ?? null;
    this.dedup = options.dedup ?? true;
    const { pool, maxInFlight } = pipelineFor(options.pool, options.maxBatchesInFlight);
    this.pool = pool;
    this.sends = new OrderedSteps(maxInFlight, () => this.failure !== null);
  }

  /** The compressor, so a policy can change the level and read measured speeds. */
  get zstd(): BatchCompressor {
    return this.compressor;
  }

  /** Reads the receiver's inventory into the mirror (or, with a shared mirror, its empty one). */
  async start(): Promise<void> {
    const own = await readInventory(this.channel, {
      maxPages: this.options.maxMirrorPages,
      dedup: this.dedup,
    });
    // A shared mirror is used through a view of this stream's own (receiver-mirror.ts).
    this.mirror = this.dedup ? (this.options.mirror?.forStream() ?? own) : own;
    this.started = true;
  }

  /** Encodes one page (4096 bytes). Resolves when it is batched; awaits channel credit when a batch goes out. */
  async writePage(pageNo: number, page: Buffer): Promise<void> {
    if (!this.started) throw new NovaError("NOVA_ILLEGAL_STATE", "PageSender.start() must complete first");
    if (this.failure) throw this.failure;
    if (page.length !== PAGE_SIZE)
      throw new NovaError("NOVA_BAD_REQUEST", `Pages are ${PAGE_SIZE} bytes, got ${page.length}`);
    this.stats.pages++;
    this.stats.bytesIn += PAGE_SIZE;
    if (isZeroPage(page)) {
      this.builder.zero(pageNo);
      this.pendingDigest.push([pageNo, ZERO_HASH]);
      this.stats.zero++;
      this.history?.record(pageNo, null, null);
    } else {
      const h = pageHash(page);
      const [hi, lo] = hashKeyParts(h);
      this.pendingDigest.push([pageNo, h]);
      if (this.mirror.touch(hi, lo)) {
        this.builder.ref(pageNo, h);
        this.stats.ref++;
      } else {
        if (!this.tryDelta(pageNo, page, h)) {
          this.builder.full(pageNo, page, looksCompressible(page));
          this.stats.full++;
        }
        this.mirror.insert(hi, lo);
      }
      this.history?.record(pageNo, h, page);
    }
    if (this.builder.count >= this.batchPages) await this.flush();
  }

  private tryDelta(pageNo: number, page: Buffer, h: Buffer): boolean {
    if (!this.history) return false;
    const base = this.history.lastHash(pageNo);
    if (base === undefined || base.equals(h.subarray(0, HASH_BYTES))) return false;
    const [bhi, blo] = hashKeyParts(base);
    if (!this.mirror.has(bhi, blo)) return false;
    const old = this.history.lastContent(pageNo);
    if (!old) return false;
    const delta = xbzrleEncode(old, page, this.deltaLimit);
    if (!delta) return false;
    this.builder.delta(pageNo, base, h, delta);
    this.mirror.touch(bhi, blo);
    this.stats.delta++;
    return true;
  }

  /**
   * Sends the current batch, if any: encodes it (on a worker thread when there is a pool)
   * and queues it behind the batches before it. Resolves when fewer than the in-flight
   * bound remain unsent, which inline (bound 1) is when this batch was sent.
   */
  async flush(): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.builder.count === 0) return;
    for (const [n, h] of this.pendingDigest) this.digest.add(n, h);
    this.pendingDigest = [];
    await this.queueBatch();
  }

  /** Encodes the builder's batch and queues it for sending, in order, within the bound. */
  private async queueBatch(): Promise<void> {
    const level = this.compressor.level;
    let encoded: Promise<Buffer>;
    if (!this.pool || level === 0 || this.builder.rawBytesA < MIN_OFFLOAD_BYTES) {
      encoded = Promise.resolve(this.builder.finish(this.compressor));
    } else {
      const batch = this.builder.take();
      const rawLength = batch.a.length;
      encoded = this.pool.encode(level, batch.a).then((r) => {
        this.compressor.record(level, rawLength, r.body.length, r.ns);
        return assembleBatch(r.codec, rawLength, r.body, batch.b);
      });
      encoded.catch(() => undefined);
    }
    await this.sends.add(
      async () => {
        const msg = await encoded;
        if (this.failure) return;
        this.stats.bytesOut += msg.length;
        await this.options.pacer?.acquire(msg.length);
        await this.channel.send(msg);
      },
      (err) => this.fail(err),
    );
    if (this.failure) throw this.failure;
  }

  /** Waits until every queued batch was sent; throws what failed, if anything did. */
  private async drain(): Promise<void> {
    await this.sends.idle();
    if (this.failure) throw this.failure;
  }

  /** A batch could not be encoded or sent: fail the stream (the receiver learns it from the abort). */
  private fail(err: unknown): void {
    if (this.failure) return;
    this.failure =
      err instanceof Error ? err : new NovaError("NOVA_INTERNAL", `HDE sender failed: ${String(err)}`);
    if (this.channel.error === null) this.channel.abort(this.failure.message);
  }

  /**
   * Ends the page stream: sends the digest, answers the receiver's NEED list with full
   * pages from the source, and waits until the receiver verified everything.
   */
  async finish(): Promise<PageSendStats> {
    await this.flush();
    await this.drain();
    const end = Buffer.allocUnsafe(1 + 8 + 32);
    end.writeUInt8(Msg.PAGES_END, 0);
    end.writeBigUInt64BE(BigInt(this.digest.pages), 1);
    this.digest.digest().copy(end, 9);
    await this.channel.send(end);
    this.stats.bytesOut += end.length;
    for (;;) {
      const m = await this.channel.read();
      if (m === null)
        throw new NovaError("NOVA_DWCP_PROTOCOL", "HDE receiver ended without answering PAGES_END");
      if (m[0] === Msg.NEED_END) break;
      if (m[0] !== Msg.NEED || (m.length - 1) % 6 !== 0)
        throw new NovaError("NOVA_DWCP_PROTOCOL", "Malformed HDE NEED list");
      for (let i = 1; i < m.length; i += 6) {
        const pageNo = m.readUIntBE(i, 6);
        const page = await this.options.source.readPage(pageNo);
        this.builder.full(pageNo, page, looksCompressible(page));
        this.stats.refilled++;
        if (this.builder.count >= this.batchPages) await this.flushFills();
      }
    }
    await this.flushFills();
    await this.drain();
    await this.channel.send(Buffer.from([Msg.FILLS_END]));
    this.stats.bytesOut += 1;
    await this.channel.end();
    // The receiver ends its direction once all fills verified; a failure arrives as an error here.
    while ((await this.channel.read()) !== null) {
      // No further messages are expected; drain defensively.
    }
    this.mirror.release();
    return { ...this.stats };
  }

  private async flushFills(): Promise<void> {
    if (this.builder.count === 0) return;
    await this.queueBatch();
  }
}
