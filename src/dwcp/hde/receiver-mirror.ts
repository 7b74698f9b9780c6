/**
 * The sender's copy of what the receiver's page cache holds (docs/dwcp.md §7.2), and the
 * inventory exchange that fills it: the receiver announces its cache as 8-byte hash
 * prefixes in LRU order; the sender replays every insert and touch the receiver will make,
 * so it knows which pages it may send as references.
 *
 * One mirror may serve several page streams into the same cache (the memory and the disk
 * connections of one migration). The receiver then applies their inserts in an order the
 * sender cannot know exactly, so a shared mirror keeps `slack` pages fewer than the cache:
 * a mirror that evicts earlier than the cache stays a subset of it. A reference the cache
 * cannot resolve anyway is detected by the receiver (it fails or asks again, never guesses).
 */
import { NovaError } from "../../lib/errors.js";
import type { Channel } from "../amst/channel.js";
import { Msg } from "./batch.js";
import { LruIndex } from "./lru-index.js";
import { PREFIX_BYTES } from "./page.js";
import type { PageCache } from "./page-cache.js";

/** What the receiver's cache holds, by 8-byte hash prefix, in the same LRU order. */
export class ReceiverMirror {
  constructor(private readonly index: LruIndex) {}

  /** A mirror that holds nothing (dedup off). */
  static empty(): ReceiverMirror {
    return new ReceiverMirror(new LruIndex(0));
  }

  get capacity(): number {
    return this.index.capacity;
  }

  get size(): number {
    return this.index.size;
  }

  /** Whether the receiver holds the prefix (no LRU change). */
  has(hi: number, lo: number): boolean {
    return this.index.find(hi, lo) !== -1;
  }

  /** Marks a prefix most recently used; false when the receiver does not hold it. */
  touch(hi: number, lo: number): boolean {
    const e = this.index.find(hi, lo);
    if (e === -1) return false;
    this.index.touch(e);
    return true;
  }

  /** Records that the receiver now caches a page, evicting as its cache will. */
  insert(hi: number, lo: number): void {
    if (this.index.capacity === 0) return;
    const e = this.index.find(hi, lo);
    if (e !== -1) {
      this.index.touch(e);
      return;
    }
    if (this.index.size >= this.index.capacity) this.index.remove(this.index.oldest());
    this.index.insert(hi, lo);
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
      mirror = new ReceiverMirror(new LruIndex(Math.max(0, size - slack)));
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
