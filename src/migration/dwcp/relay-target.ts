/**
 * Destination half of the DWCP migration relay (docs/migration-stream.md, "Relay"): owns
 * rebuilding QEMU's migration stream from the control channel (verbatim bytes and page
 * positions) and the HDE page channel, in the original order, and writing it into the
 * destination QEMU's incoming migration socket; carrying QEMU's return path back; and the
 * end-to-end check (byte count and SHA-256 of the whole rebuilt stream against the
 * source's) whose verdict the source waits for.
 *
 * Fail-safe: pages only come from PageReceiver, which verifies every page against the
 * sender's hash. A cache miss (the destination lost a page its inventory announced) would
 * leave a hole in the stream that HDE can only fill at its very end, so the relay fails
 * instead of stalling or guessing: the QEMU socket is destroyed, the incoming migration
 * fails, the source keeps running. A rebuilt stream whose digest does not match fails the
 * same way; the orchestrator must never resume a destination whose relay did not succeed.
 */
import { createHash } from "node:crypto";
import type { Socket } from "node:net";
import type { Channel } from "../../dwcp/amst/channel.js";
import type { PageHistory } from "../../dwcp/hde/history.js";
import { ZERO_PAGE } from "../../dwcp/hde/page.js";
import type { PageCache } from "../../dwcp/hde/page-cache.js";
import { PageReceiver, type PageReceiveStats } from "../../dwcp/hde/page-receiver.js";
import { NovaError } from "../../lib/errors.js";
import type { ChannelRouter } from "./channel-router.js";
import type { ServerReplyGate } from "./nbd-reply-gate.js";
import {
  CtlMsg,
  decodeEnd,
  encodeCounter,
  encodeVerdict,
  SegmentDecoder,
  type StreamEnd,
} from "./relay-codec.js";
import { relayError } from "./relay-error.js";
import { connectLocal, type LocalEndpoint, waitDrain } from "./socket-io.js";

/** Destination relay options. */
export interface TargetRelayOptions {
  /** Routes the session's channels; the source opens `<label>/ctl` and `<label>/pages`. */
  router: ChannelRouter;
  /** @defaultValue "mig" */
  label?: string;
  /** The destination QEMU's incoming migration endpoint (after `migrate-incoming`). */
  qemu: LocalEndpoint | Promise<LocalEndpoint>;
  /** The host's persistent page cache; null disables dedup and deltas. */
  cache: PageCache | null;
  /**
   * Remember received pages as this host's last version of each page, so a migration of
   * the same VM back can send deltas. Its store may be `cache` itself (see docs).
   */
  history?: PageHistory | null;
  /** Pages decoded ahead of the rebuilt stream. @defaultValue 1024 (4 MiB) */
  maxQueuedPages?: number;
  /** Report progress to the source after this many stream bytes. @defaultValue 256 KiB */
  progressEveryBytes?: number;
  /** The control channel, when the caller already took it from the router. */
  ctl?: Channel;
  /**
   * false: the source shares a mirror of `cache` read on another channel, so this relay
   * announces an empty inventory. @defaultValue true
   */
  announce?: boolean;
  /**
   * Connect to `qemu` at once rather than when the first bytes arrive: for protocols
   * whose server speaks first (NBD's greeting). @defaultValue false
   */
  connectAtStart?: boolean;
  /**
   * Follows the server's answers (NBD: nbd-reply-gate.ts): the stream counts as verified
   * only once the requests the source answered itself were answered here too, and no
   * answer reported an error.
   */
  gate?: ServerReplyGate;
}

/** What the destination relay did. */
export interface TargetRelayResult {
  /** Bytes of the rebuilt stream written to QEMU. */
  bytes: number;
  pages: number;
  receiver: PageReceiveStats;
  /** The source's parser saw the stream end inside a record. */
  truncated: boolean;
}

/** A bounded FIFO of verified pages between PageReceiver and the rebuilt stream. */
class PageQueue {
  private readonly items: Buffer[] = [];
  private head = 0;
  private taker: { resolve: (b: Buffer) => void; reject: (e: Error) => void } | null = null;
  private putter: (() => void) | null = null;
  private failure: Error | null = null;
  private ended = false;

  constructor(private readonly capacity: number) {}

  private get size(): number {
    return this.items.length - this.head;
  }

  async put(page: Buffer): Promise<void> {
    while (this.size >= this.capacity && !this.failure) {
      await new Promise<void>((resolve) => {
        this.putter = resolve;
      });
    }
    if (this.failure) throw this.failure;
    if (this.taker) {
      const t = this.taker;
      this.taker = null;
      t.resolve(page);
      return;
    }
    this.items.push(page);
  }

  take(): Promise<Buffer> {
    if (this.size > 0) {
      const p = this.items[this.head]!;
      this.items[this.head++] = ZERO_PAGE;
      if (this.head > 4096) {
        this.items.splice(0, this.head);
        this.head = 0;
      }
      const w = this.putter;
      this.putter = null;
      w?.();
      return Promise.resolve(p);
    }
    if (this.failure) return Promise.reject(this.failure);
    if (this.ended)
      return Promise.reject(
        new NovaError(
          "NOVA_DWCP_PROTOCOL",
          "Migration relay: the page stream ended before the control stream",
        ),
      );
    return new Promise((resolve, reject) => {
      this.taker = { resolve, reject };
    });
  }

  end(): void {
    this.ended = true;
    if (this.taker && this.size === 0) {
      const t = this.taker;
      this.taker = null;
      t.reject(
        new NovaError(
          "NOVA_DWCP_PROTOCOL",
          "Migration relay: the page stream ended before the control stream",
        ),
      );
    }
  }

  fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    this.taker?.reject(err);
    this.taker = null;
    const w = this.putter;
    this.putter = null;
    w?.();
  }
}

/** Stream bytes gathered before one write into QEMU's socket. */
const OUT_BATCH_BYTES = 256 * 1024;

/** Rebuilds one migration stream into the destination QEMU. */
export class MigrationRelayTarget {
  /** Resolves when the whole stream was written and verified; rejects otherwise. */
  readonly done: Promise<TargetRelayResult>;
  private sock: Socket | null = null;
  private ctl: Channel | null = null;
  private pagesCh: Channel | null = null;
  private readonly queue: PageQueue;
  private readonly hash = createHash("sha256");
  private written = 0;
  /** Stream bytes queued for QEMU's socket (write, flushOut). */
  private out: Buffer[] = [];
  private outBytes = 0;
  private lastProgress = 0;
  private pagesWritten = 0;
  private failure: Error | null = null;
  private readonly label: string;

  constructor(private readonly options: TargetRelayOptions) {
    this.label = options.label ?? "mig";
    this.queue = new PageQueue(options.maxQueuedPages ?? 1024);
    this.done = this.run().catch((err: unknown) => {
      const e = this.fail(err);
      throw e;
    });
    // Callers may only look at `done` later; the rejection is theirs, not unhandled.
    this.done.catch(() => undefined);
  }

  /** Bytes written to QEMU so far. */
  get bytesWritten(): number {
    return this.written;
  }

  /** Why the relay failed, once it did (its `done` rejected with this). */
  get error(): Error | null {
    return this.failure;
  }

  /** Stops the relay: the QEMU socket is destroyed and the channels aborted. */
  abort(reason: string): void {
    this.fail(new NovaError("NOVA_MIGRATION_RELAY", `Migration relay aborted: ${reason}`));
  }

  private fail(err: unknown): Error {
    if (this.failure) return this.failure;
    const e = relayError(err);
    this.failure = e;
    this.sock?.destroy();
    this.queue.fail(e);
    this.options.gate?.abort(e);
    for (const ch of [this.ctl, this.pagesCh]) if (ch && ch.error === null) ch.abort(e.message);
    return e;
  }

  private async run(): Promise<TargetRelayResult> {
    const { router } = this.options;
    const ctl = this.options.ctl ?? (await router.take(`${this.label}/ctl`));
    this.ctl = ctl;
    const pagesCh = await router.take(`${this.label}/pages`);
    this.pagesCh = pagesCh;
    const history = this.options.history ?? null;
    const missed = (): NovaError =>
      new NovaError(
        "NOVA_MIGRATION_RELAY",
        "The destination page cache could not supply a page it had announced; the migration fails safe",
        { details: { misses: receiver.stats.misses } },
      );
    // PageReceiver resolves a miss only after PAGES_END, but the stream needs the page at
    // its place now. A missed record produces no sink write, so misses are checked on every
    // sink write and whenever the receiver asks for its next message (after each batch).
    const watched = new Proxy(pagesCh, {
      get: (ch, prop) => {
        if (prop === "read") {
          return () => (receiver.stats.misses > 0 ? Promise.reject(missed()) : ch.read());
        }
        const v: unknown = Reflect.get(ch, prop, ch);
        return typeof v === "function" ? v.bind(ch) : v;
      },
    });
    const receiver = new PageReceiver(watched, {
      cache: this.options.cache,
      announce: this.options.announce ?? true,
      sink: {
        write: async (pageNo, page, hash) => {
          if (receiver.stats.misses > 0) throw missed();
          if (history) {
            // The receiver verified the page against this hash: no second SHA-256 here.
            if (page === ZERO_PAGE) history.record(pageNo, null, null);
            else history.record(pageNo, hash, page);
          }
          await this.queue.put(page);
        },
      },
    });
    const received = receiver.run().then(
      (stats) => {
        this.queue.end();
        return stats;
      },
      (err: unknown) => {
        this.queue.fail(err instanceof Error ? err : new Error(String(err)));
        throw err;
      },
    );
    received.catch(() => undefined);
    if (this.options.connectAtStart) await this.qemuSocket();

    const decoder = new SegmentDecoder();
    let end: StreamEnd | null = null;
    let receiverStats: PageReceiveStats | null = null;
    for (;;) {
      const m = await ctl.read();
      if (m === null) break;
      if (this.failure) throw this.failure;
      if (m[0] === CtlMsg.SEGMENT) {
        if (end) throw new NovaError("NOVA_DWCP_PROTOCOL", "Migration relay: data after END");
        await this.writeSegment(decoder, m);
        continue;
      }
      if (m[0] !== CtlMsg.END || end)
        throw new NovaError("NOVA_DWCP_PROTOCOL", `Migration relay: unexpected control message ${m[0]}`);
      end = decodeEnd(m);
      receiverStats = await received;
      if (this.options.gate) {
        await this.flushOut(await this.qemuSocket());
        await this.options.gate.settled();
      }
      const ours = this.hash.digest();
      const ok = end.bytes === this.written && end.sha256.equals(ours) && end.pages === this.pagesWritten;
      await ctl.send(encodeCounter(CtlMsg.PROGRESS, this.written));
      await ctl.send(encodeVerdict(ok, this.written));
      if (!ok) {
        throw new NovaError(
          "NOVA_MIGRATION_RELAY",
          "The rebuilt migration stream does not match the source's (end-to-end check failed)",
          { details: { expectedBytes: end.bytes, writtenBytes: this.written } },
        );
      }
      this.sock?.end();
      await ctl.end();
    }
    if (!end || !receiverStats)
      throw new NovaError("NOVA_DWCP_PROTOCOL", "Migration relay: the source ended without END");
    return {
      bytes: this.written,
      pages: this.pagesWritten,
      receiver: receiverStats,
      truncated: end.truncated,
    };
  }

  private async qemuSocket(): Promise<Socket> {
    if (this.sock) return this.sock;
    const s = await connectLocal(await this.options.qemu);
    this.sock = s;
    const ctl = this.ctl!;
    s.on("data", (d: Buffer) => {
      try {
        this.options.gate?.serverBytes(d);
      } catch (err) {
        this.fail(err);
        return;
      }
      // QEMU's return path: tiny messages, sent as they come.
      const m = Buffer.allocUnsafe(1 + d.length);
      m[0] = CtlMsg.RETURN;
      d.copy(m, 1);
      ctl.send(m).catch(() => undefined);
    });
    // QEMU closes the socket once it has read the whole stream, possibly before our END
    // arrives; a close that matters shows up as a failed write (waitDrain) instead.
    s.on("error", () => undefined);
    return s;
  }

  private async writeSegment(decoder: SegmentDecoder, m: Buffer): Promise<void> {
    const items = decoder.decode(m);
    const s = await this.qemuSocket();
    for (const item of items) {
      if (item.kind === "bytes") {
        await this.write(s, item.data);
        continue;
      }
      for (let i = 0; i < item.count; i++) {
        const page = await this.queue.take();
        await this.write(s, page);
        this.pagesWritten++;
      }
    }
    await this.flushOut(s);
    const every = this.options.progressEveryBytes ?? 256 * 1024;
    if (this.written - this.lastProgress >= every) {
      this.lastProgress = this.written;
      await this.ctl!.send(encodeCounter(CtlMsg.PROGRESS, this.written));
    }
  }

  /**
   * Queues stream bytes for QEMU; they go out in batches (flushOut). Written one by one,
   * every page and every few-byte record header was a system call of its own: 1.0 of the
   * destination agent's 5 CPU-seconds in a cold migration of the bench guest.
   */
  private async write(s: Socket, data: Buffer): Promise<void> {
    this.hash.update(data);
    this.written += data.length;
    const gate = this.options.gate;
    const now = gate ? gate.clientBytes(data) : data.length;
    if (now < data.length) {
      // The gate holds the rest back until the server has answered everything before it.
      if (now > 0) {
        this.out.push(data.subarray(0, now));
        this.outBytes += now;
      }
      await this.flushOut(s);
      await gate!.settled();
      data = data.subarray(now);
    }
    this.out.push(data);
    this.outBytes += data.length;
    if (this.outBytes >= OUT_BATCH_BYTES) await this.flushOut(s);
  }

  /** Hands the queued bytes to the socket as one write (writev), then waits for room. */
  private async flushOut(s: Socket): Promise<void> {
    if (this.out.length === 0) return;
    const bufs = this.out;
    this.out = [];
    this.outBytes = 0;
    s.cork();
    let room = true;
    for (const b of bufs) room = s.write(b);
    s.uncork();
    if (!room) await waitDrain(s);
  }
}
