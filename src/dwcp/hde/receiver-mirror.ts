/**
 * The sender's copy of what the receiver's page cache holds (docs/dwcp.md §7.2), and the
 * inventory exchange that fills it: the receiver announces its cache as 8-byte hash
 * prefixes in LRU order; the sender replays every insert and touch the receiver will make,
 * so it knows which pages it may send as references.
 *
 * One mirror may serve several page streams into the same cache (the memory and the disk
 * connections of one migration), each through its own view (`forStream`). The receiver
 * then applies their inserts in an order the sender cannot know exactly, so a shared
 * mirror keeps `slack` pages fewer than the cache: a mirror that evicts earlier than the
 * cache stays a subset of it. And a stream references only pages the cache held before
 * the session (the inventory) or that it sent itself: a page another stream sent may
 * still be on its way (the session sends channels by priority, docs/dwcp.md §4.6, and
 * the receiver processes each channel on its own), and a reference that reaches the
 * receiver first is one it cannot resolve; before this rule, that failed one in three
 * overlapped migrations on the emulated wan. Once a stream ended verified, everything it
 * sent is in the cache and its pages become every stream's. A reference the cache cannot resolve anyway
 * is detected by the receiver (it fails or asks again, never guesses).
 */
import { NovaError } from "../../lib/errors.js";
import type { Channel } from "../amst/channel.js";
import { Msg } from "./batch.js";
import { LruIndex } from "./lru-index.js";
import { PREFIX_BYTES } from "./page.js";
import type { PageCache } from "./page-cache.js";

/** The stream of an unshared mirror, and the owner of pages the inventory announced. */
const ANY_STREAM = 0;

/** What one page stream may use of a mirror (ReceiverMirror.forStream). */
export interface MirrorAccess {
  /** Whether the receiver holds the prefix and this stream may reference it (no LRU change). */
  has(hi: number, lo: number): boolean;
  /** Marks a prefix most recently used; false when this stream may not reference it. */
  touch(hi: number, lo: number): boolean;
  /** Records that the receiver now caches a page this stream sent. */
  insert(hi: number, lo: number): void;
  /** The receiver verified everything this stream sent: other streams may reference it now. */
  release(): void;
}

/** What the receiver's cache holds, by 8-byte hash prefix, in the same LRU order. */
export class ReceiverMirror implements MirrorAccess {
  private streams = 0;

  /** @param index one value word per entry: the stream that inserted it (0: the inventory). */
  constructor(private readonly index: LruIndex) {
    if (index.capacity > 0 && index.words < 1)
      throw new NovaError("NOVA_INTERNAL", "A receiver mirror needs one value word per entry");
  }

  /** A mirror that holds nothing (dedup off). */
  static empty(): ReceiverMirror {
    return new ReceiverMirror(new LruIndex(0));
  }

  /** A view for one of several page streams sharing this mirror (see the header). */
  forStream(): MirrorAccess {
    const stream = ++this.streams;
    return {
      has: (hi, lo) => this.hasFor(hi, lo, stream),
      touch: (hi, lo) => this.touchFor(hi, lo, stream),
      insert: (hi, lo) => this.insertFor(hi, lo, stream),
      release: () => {
        for (const e of this.index.entries())
          if (this.index.value(e) === stream) this.index.setValue(e, 0, ANY_STREAM);
      },
    };
  }

  /** Nothing to do for an unshared mirror's one stream. */
  release(): void {}

  get capacity(): number {
    return this.index.capacity;
  }

  get size(): number {
    return this.index.size;
  }

  /** Whether the receiver holds the prefix (no LRU change); for an unshared mirror. */
  has(hi: number, lo: number): boolean {
    return this.hasFor(hi, lo, ANY_STREAM);
  }

  /** Marks a prefix most recently used; false when the receiver does not hold it. */
  touch(hi: number, lo: number): boolean {
    return this.touchFor(hi, lo, ANY_STREAM);
  }

  /** Records that the receiver now caches a page, evicting as its cache will. */
  insert(hi: number, lo: number): void {
    this.insertFor(hi, lo, ANY_STREAM);
  }

  private usable(e: number, stream: number): boolean {
    if (e === -1) return false;
    const owner = this.index.value(e);
    return stream === ANY_STREAM || owner === ANY_STREAM || owner === stream;
  }

  private hasFor(hi: number, lo: number, stream: number): boolean {
    return this.usable(this.index.find(hi, lo), stream);
  }

  private touchFor(hi: number, lo: number, stream: number): boolean {
    const e = this.index.find(hi, lo);
    if (!this.usable(e, stream)) return false;
    this.index.touch(e);
    return true;
  }

  private insertFor(hi: number, lo: number, stream: number): void {
    if (this.index.capacity === 0) return;
    const e = this.index.find(hi, lo);
    if (e !== -1) {
      // The receiver touches what it already holds; the page stays its first sender's.
      this.index.touch(e);
      return;
    }
    if (this.index.size >= this.index.capacity) this.index.remove(this.index.oldest());
    this.index.setValue(this.index.insert(hi, lo), 0, stream);
  }
}

/** How to size the mirror read from an inventory. */
export interface MirrorLimits {
  /** Largest mirror, in pages (~28 bytes each). @defaultValue 2^20 (a 4 GiB cache) */
  maxPages?: number;
  /** Pages fewer than the receiver's cache (for a mirror shared by several streams). @defaultValue 0 */
  slack?: number;
  /** The same as a share of the receiver's capacity; the larger of the two applies. @defaultValue 0 */
  slackShare?: number;
  /** false: ignore the inventory and mirror nothing (no references). @defaultValue true */
  dedup?: boolean;
}

/**
 * Reads the receiver's inventory (INVENTORY… INVENTORY_END) into a new mirror. Prefixes
 * go into the mirror as they arrive (the mirror evicts like the cache), so an inventory
 * of any length costs at most the mirror's fixed size: a peer cannot make this side
 * buffer without bound. Every INVENTORY message carries the same capacity.
 */
export async function readInventory(channel: Channel, limits: MirrorLimits = {}): Promise<ReceiverMirror> {
  let mirror: ReceiverMirror | null = null;
  let capacity = 0;
  for (;;) {
    const m = await channel.read();
    if (m === null)
      throw new NovaError("NOVA_DWCP_PROTOCOL", "HDE receiver ended before sending its inventory");
    if (m[0] === Msg.INVENTORY_END) break;
    if (m[0] !== Msg.INVENTORY || m.length < 5 || (m.length - 5) % PREFIX_BYTES !== 0) {
      throw new NovaError("NOVA_DWCP_PROTOCOL", "Malformed HDE inventory");
    }
    const claimed = m.readUInt32BE(1);
    if (mirror === null) {
      capacity = claimed;
      // The mirror is allocated up front, so a peer's claimed capacity is capped. A mirror
      // smaller than the cache stays a subset of it (same order, earlier eviction): safe.
      const size = limits.dedup === false ? 0 : Math.min(capacity, limits.maxPages ?? 1 << 20);
      const slack = Math.max(limits.slack ?? 0, Math.ceil(capacity * (limits.slackShare ?? 0)));
      mirror = new ReceiverMirror(new LruIndex(Math.max(0, size - slack), 1));
    } else if (claimed !== capacity) {
      throw new NovaError("NOVA_DWCP_PROTOCOL", "Malformed HDE inventory: the capacity changed");
    }
    for (let i = 5; i + PREFIX_BYTES <= m.length; i += PREFIX_BYTES)
      mirror.insert(m.readUInt32BE(i), m.readUInt32BE(i + 4));
  }
  return mirror ?? new ReceiverMirror(new LruIndex(0));
}

/**
 * Announces `cache` (null: an empty inventory) on `channel`. With `announce` false only
 * an empty inventory goes out: the sender already has a mirror (shared, see above).
 */
export async function sendInventory(
  channel: Channel,
  cache: PageCache | null,
  options: { chunkPrefixes?: number; announce?: boolean } = {},
): Promise<void> {
  const announce = options.announce ?? true;
  const capacity = announce ? (cache?.capacityPages ?? 0) : 0;
  const inv = announce ? (cache?.inventory() ?? Buffer.alloc(0)) : Buffer.alloc(0);
  const chunk = (options.chunkPrefixes ?? 65536) * PREFIX_BYTES;
  for (let off = 0; off < inv.length || off === 0; off += chunk) {
    const head = Buffer.allocUnsafe(5);
    head.writeUInt8(Msg.INVENTORY, 0);
    head.writeUInt32BE(capacity, 1);
    await channel.send(Buffer.concat([head, inv.subarray(off, off + chunk)]));
    if (inv.length === 0) break;
  }
  await channel.send(Buffer.from([Msg.INVENTORY_END]));
}
