/**
 * A fixed-capacity LRU index from 64-bit keys to a few u32 words, held in typed arrays
 * (docs/dwcp.md §7.2). The page cache, the sender's mirror of it and the page history
 * each index up to millions of pages; a JS Map costs ~100 bytes per entry and the
 * garbage collector's time, this costs 20 + 4 × words bytes per entry plus the table,
 * allocated once. Open addressing with linear probing and backward-shift deletion; a
 * doubly linked list in entry order gives LRU (head = least recently used).
 *
 * Eviction is the caller's decision: `insert` requires room, `oldest()` names the victim.
 */
import { NovaError } from "../../lib/errors.js";

const EMPTY = -1;

/** Splits a page hash (first 8 bytes) into a 64-bit key. */
export function hashKeyParts(h: Buffer): [number, number] {
  return [h.readUInt32BE(0), h.readUInt32BE(4)];
}

/** Splits a page number (< 2^48) into a 64-bit key. */
export function numberKeyParts(n: number): [number, number] {
  return [Math.floor(n / 4294967296) >>> 0, n >>> 0];
}

/** Fixed-capacity LRU map of 64-bit keys to `words` u32 values each. */
export class LruIndex {
  readonly capacity: number;
  readonly words: number;
  private readonly hi: Uint32Array;
  private readonly lo: Uint32Array;
  private readonly vals: Uint32Array;
  private readonly prev: Int32Array;
  private readonly next: Int32Array;
  private readonly table: Int32Array;
  private readonly mask: number;
  /** Entries removed and free again (a stack); entries never used start at `fresh`. */
  private readonly free: Int32Array;
  private freeTop = 0;
  private fresh = 0;
  private head = EMPTY;
  private tail = EMPTY;
  private count = 0;

  constructor(capacity: number, words = 0) {
    if (!Number.isInteger(capacity) || capacity < 0 || capacity > 1 << 28) {
      throw new NovaError("NOVA_BAD_REQUEST", `LRU index capacity ${capacity} is out of range`);
    }
    this.capacity = capacity;
    this.words = words;
    const n = Math.max(1, capacity);
    this.hi = new Uint32Array(n);
    this.lo = new Uint32Array(n);
    this.vals = new Uint32Array(n * Math.max(1, words));
    this.prev = new Int32Array(n);
    this.next = new Int32Array(n);
    let size = 2;
    while (size < n * 2) size *= 2;
    // The table holds entry + 1 (0: empty), so that nothing is written at creation: the
    // arrays of a million-page index cost no time until used (a session creates several).
    this.table = new Int32Array(size);
    this.mask = size - 1;
    this.free = new Int32Array(n);
  }

  /** Entries held. */
  get size(): number {
    return this.count;
  }

  private home(hi: number, lo: number): number {
    let h = Math.imul(lo ^ Math.imul(hi, 0x9e3779b1), 0x85ebca6b);
    h ^= h >>> 15;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 13;
    return h & this.mask;
  }

  /** The entry for a key, or -1; recency unchanged. */
  find(hi: number, lo: number): number {
    let i = this.home(hi, lo);
    for (;;) {
      const t = this.table[i]!;
      if (t === 0) return EMPTY;
      const e = t - 1;
      if (this.hi[e] === hi && this.lo[e] === lo) return e;
      i = (i + 1) & this.mask;
    }
  }

  /** Marks an entry most recently used. */
  touch(e: number): void {
    if (e === this.tail) return;
    this.unlink(e);
    this.linkTail(e);
  }

  /** Adds a key (absent, with room) as most recently used; returns its entry. */
  insert(hi: number, lo: number): number {
    if (this.count >= this.capacity)
      throw new NovaError("NOVA_INTERNAL", "LRU index is full; evict oldest() first");
    const e = this.freeTop > 0 ? this.free[--this.freeTop]! : this.fresh++;
    this.hi[e] = hi;
    this.lo[e] = lo;
    let i = this.home(hi, lo);
    while (this.table[i] !== 0) i = (i + 1) & this.mask;
    this.table[i] = e + 1;
    this.linkTail(e);
    this.count++;
    return e;
  }

  /** Removes an entry. */
  remove(e: number): void {
    let i = this.home(this.hi[e]!, this.lo[e]!);
    while (this.table[i] !== e + 1) i = (i + 1) & this.mask;
    // Backward-shift deletion keeps every probe chain unbroken without tombstones.
    let j = i;
    for (;;) {
      this.table[i] = 0;
      for (;;) {
        j = (j + 1) & this.mask;
        const f = this.table[j]!;
        if (f === 0) {
          this.unlink(e);
          this.free[this.freeTop++] = e;
          this.count--;
          return;
        }
        const k = this.home(this.hi[f - 1]!, this.lo[f - 1]!);
        // Move f back to i unless its home lies cyclically in (i, j].
        const stays = i <= j ? i < k && k <= j : i < k || k <= j;
        if (!stays) {
          this.table[i] = f;
          i = j;
          break;
        }
      }
    }
  }

  /** The least recently used entry, or -1 when empty. */
  oldest(): number {
    return this.head;
  }

  /** Key words of an entry. */
  keyOf(e: number): [number, number] {
    return [this.hi[e]!, this.lo[e]!];
  }

  /** Value word `w` of an entry. */
  value(e: number, w = 0): number {
    return this.vals[e * this.words + w]!;
  }

  /** Sets value word `w` of an entry. */
  setValue(e: number, w: number, v: number): void {
    this.vals[e * this.words + w] = v >>> 0;
  }

  /** Entries from least to most recently used. */
  *entries(): IterableIterator<number> {
    for (let e = this.head; e !== EMPTY; e = this.next[e]!) yield e;
  }

  private unlink(e: number): void {
    const p = this.prev[e]!;
    const n = this.next[e]!;
    if (p === EMPTY) this.head = n;
    else this.next[p] = n;
    if (n === EMPTY) this.tail = p;
    else this.prev[n] = p;
  }

  private linkTail(e: number): void {
    this.prev[e] = this.tail;
    this.next[e] = EMPTY;
    if (this.tail === EMPTY) this.head = e;
    else this.next[this.tail] = e;
    this.tail = e;
  }
}
