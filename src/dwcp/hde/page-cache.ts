/**
 * The receiver's persistent page cache (docs/dwcp.md §7.2): content-addressed pages on
 * disk with a size cap and LRU eviction, so a later session (the same VM again, or one
 * from the same base image) can send references instead of pages.
 *
 * Layout in `dir`: `pages.dat` holds fixed 4 KiB slots; `index.dat` lists (hash, slot) from
 * least to most recently used and is rewritten atomically by `flush()`. Every read is
 * verified against its hash: a corrupted slot is dropped and reported as a miss, so bad
 * bytes can never be handed out. An unreadable index starts the cache empty.
 */
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  write,
  writeFileSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import { hashKeyParts, LruIndex } from "./lru-index.js";
import { HASH_BYTES, PAGE_SIZE, PREFIX_BYTES, pageHash } from "./page.js";

const INDEX_MAGIC = 0x4e435043; // "NCPC"
const INDEX_VERSION = 1;
const ENTRY_BYTES = HASH_BYTES + 4;
const RUN_PAGES = 64;
/** Runs waiting for the disk beyond this many bytes are written synchronously (memory bound). */
const MAX_PENDING_BYTES = 64 * 1024 * 1024;

/** Pages for consecutive slots, written to the data file with one call. */
interface Run {
  first: number;
  count: number;
  buf: Buffer;
}

/** Counters of a page cache. */
export interface PageCacheStats {
  pages: number;
  hits: number;
  misses: number;
  /** Reads whose bytes did not match their hash (dropped). */
  corrupt: number;
  evictions: number;
}

/** A size-capped, persistent, verified page store. Not safe for two processes at once. */
export class PageCache {
  /** Key: hash bytes 0..7; values: slot, hash bytes 8..11, hash bytes 12..15. */
  private readonly lru: LruIndex;
  private readonly free: number[] = [];
  private nextSlot = 0;
  private readonly fd: number;
  private readonly counters: PageCacheStats = { pages: 0, hits: 0, misses: 0, corrupt: 0, evictions: 0 };
  /** Pages waiting to be written as one run of consecutive slots. */
  private run: Run | null = null;
  /**
   * Full runs handed to the disk, oldest first, written one at a time off the event loop
   * (the first may be in the kernel's hands); reads find their pages here until written.
   * Written synchronously, the destination's cache writes stalled its relays (1.6 of its
   * 5 CPU-seconds in one cold migration of the bench guest, docs/benchmarks.md).
   */
  private readonly pending: Run[] = [];
  private pendingBytes = 0;
  private writing = false;
  /** close() came while a write was in flight: the callback closes the file. */
  private closeAfterWrite = false;
  private closedValue: Promise<void> = Promise.resolve();
  private fileClosed: (() => void) | null = null;
  /** Why the index on disk was ignored at open, if it was. */
  readonly openWarning: string | null;

  /** Opens (or creates) the cache in `dir` holding at most `capacityBytes` of pages. */
  constructor(
    readonly dir: string,
    capacityBytes: number,
  ) {
    mkdirSync(dir, { recursive: true });
    const capacity = Math.max(1, Math.floor(capacityBytes / PAGE_SIZE));
    this.lru = new LruIndex(capacity, 3);
    const dataPath = join(dir, "pages.dat");
    this.fd = openSync(dataPath, existsSync(dataPath) ? "r+" : "w+");
    this.openWarning = this.loadIndex(capacity);
  }

  /** Most pages the cache holds. */
  get capacityPages(): number {
    return this.lru.capacity;
  }

  /** Counters since open. */
  stats(): PageCacheStats {
    return { ...this.counters, pages: this.lru.size };
  }

  /** The index entry for a full hash, or -1. */
  private entryOf(h: Buffer): number {
    const [hi, lo] = hashKeyParts(h);
    const e = this.lru.find(hi, lo);
    if (e === -1) return -1;
    return this.lru.value(e, 1) === h.readUInt32BE(8) && this.lru.value(e, 2) === h.readUInt32BE(12) ? e : -1;
  }

  /** True when the hash is indexed (content unverified). */
  has(h: Buffer): boolean {
    return this.entryOf(h) !== -1;
  }

  /** The page with hash `h`, verified, marked most recently used; null on a miss or corruption. */
  get(h: Buffer): Buffer | null {
    const e = this.entryOf(h);
    if (e === -1) {
      this.counters.misses++;
      return null;
    }
    this.lru.touch(e);
    const slot = this.lru.value(e, 0);
    const pendingPage = this.unwritten(slot);
    const page = pendingPage ? Buffer.from(pendingPage) : Buffer.allocUnsafe(PAGE_SIZE);
    const n = pendingPage ? PAGE_SIZE : readSync(this.fd, page, 0, PAGE_SIZE, slot * PAGE_SIZE);
    if (n !== PAGE_SIZE || !pageHash(page).equals(h.subarray(0, HASH_BYTES))) {
      this.lru.remove(e);
      this.free.push(slot);
      this.counters.corrupt++;
      this.counters.misses++;
      return null;
    }
    this.counters.hits++;
    return page;
  }

  /** Stores a page under its hash (refreshing recency if present), evicting the LRU page when full. */
  put(h: Buffer, page: Buffer): void {
    const [hi, lo] = hashKeyParts(h);
    const found = this.lru.find(hi, lo);
    if (found !== -1) {
      if (this.lru.value(found, 1) === h.readUInt32BE(8) && this.lru.value(found, 2) === h.readUInt32BE(12)) {
        this.lru.touch(found);
        return;
      }
      // Same first 8 bytes, different page: the newer one takes the key.
      this.free.push(this.lru.value(found, 0));
      this.lru.remove(found);
    }
    let slot = this.free.pop();
    if (slot === undefined && this.nextSlot < this.lru.capacity) slot = this.nextSlot++;
    if (slot === undefined) {
      const victim = this.lru.oldest();
      if (victim === -1) return;
      slot = this.lru.value(victim, 0);
      this.lru.remove(victim);
      this.counters.evictions++;
    }
    this.write(slot, page);
    this.insertEntry(h, slot);
  }

  private insertEntry(h: Buffer, slot: number): void {
    const [hi, lo] = hashKeyParts(h);
    const e = this.lru.insert(hi, lo);
    this.lru.setValue(e, 0, slot);
    this.lru.setValue(e, 1, h.readUInt32BE(8));
    this.lru.setValue(e, 2, h.readUInt32BE(12));
  }

  /**
   * Queues a page for its slot. Consecutive slots (the common case: a new cache fills in
   * order, and eviction reuses slots in LRU order) go out as one write of up to 64 pages,
   * which costs a fifth of the CPU of one write per page.
   */
  private write(slot: number, page: Buffer): void {
    const run = this.run;
    if (run && slot >= run.first && slot < run.first + run.count) {
      page.copy(run.buf, (slot - run.first) * PAGE_SIZE);
      return;
    }
    if (run && slot === run.first + run.count && run.count < RUN_PAGES) {
      page.copy(run.buf, run.count * PAGE_SIZE);
      run.count++;
      return;
    }
    this.flushRun();
    const buf = Buffer.allocUnsafe(RUN_PAGES * PAGE_SIZE);
    page.copy(buf, 0);
    this.run = { first: slot, count: 1, buf };
  }

  /** The newest not yet written copy of a slot, if any. */
  private unwritten(slot: number): Buffer | undefined {
    const at = (r: Run) =>
      slot >= r.first && slot < r.first + r.count
        ? r.buf.subarray((slot - r.first) * PAGE_SIZE, (slot - r.first + 1) * PAGE_SIZE)
        : undefined;
    if (this.run) {
      const p = at(this.run);
      if (p) return p;
    }
    for (let i = this.pending.length - 1; i >= 0; i--) {
      const p = at(this.pending[i]!);
      if (p) return p;
    }
    return undefined;
  }

  private flushRun(): void {
    const run = this.run;
    if (!run) return;
    this.run = null;
    const bytes = run.count * PAGE_SIZE;
    if (this.pendingBytes + bytes > MAX_PENDING_BYTES) {
      // The disk is behind: wait for it here rather than hold more. A slot rewritten
      // while an older write of it is still in flight may end up with the older bytes,
      // which its hash check then rejects (a miss, never wrong data).
      writeSync(this.fd, run.buf, 0, bytes, run.first * PAGE_SIZE);
      return;
    }
    this.pending.push(run);
    this.pendingBytes += bytes;
    this.writeNext();
  }

  private writeNext(): void {
    const run = this.pending[0];
    if (this.writing || !run) return;
    this.writing = true;
    write(this.fd, run.buf, 0, run.count * PAGE_SIZE, run.first * PAGE_SIZE, () => {
      // A failed write leaves bytes that do not match their hashes: reads reject them.
      this.writing = false;
      if (this.closeAfterWrite) {
        closeSync(this.fd);
        this.fileClosed?.();
        return;
      }
      this.pending.shift();
      this.pendingBytes -= run.count * PAGE_SIZE;
      this.writeNext();
    });
  }

  /** Hash prefixes from least to most recently used: what a sender mirrors. */
  inventory(): Buffer {
    const out = Buffer.allocUnsafe(this.lru.size * PREFIX_BYTES);
    let pos = 0;
    for (const e of this.lru.entries()) {
      const [hi, lo] = this.lru.keyOf(e);
      out.writeUInt32BE(hi, pos);
      out.writeUInt32BE(lo, pos + 4);
      pos += PREFIX_BYTES;
    }
    return out;
  }

  /** Writes the index atomically (the pages still being written follow it to the disk). */
  flush(): void {
    this.flushRun();
    const count = this.lru.size;
    const buf = Buffer.allocUnsafe(16 + count * ENTRY_BYTES + 4);
    buf.writeUInt32BE(INDEX_MAGIC, 0);
    buf.writeUInt32BE(INDEX_VERSION, 4);
    buf.writeUInt32BE(PAGE_SIZE, 8);
    buf.writeUInt32BE(count, 12);
    let pos = 16;
    for (const e of this.lru.entries()) {
      const [hi, lo] = this.lru.keyOf(e);
      buf.writeUInt32BE(hi, pos);
      buf.writeUInt32BE(lo, pos + 4);
      buf.writeUInt32BE(this.lru.value(e, 1), pos + 8);
      buf.writeUInt32BE(this.lru.value(e, 2), pos + 12);
      buf.writeUInt32BE(this.lru.value(e, 0), pos + HASH_BYTES);
      pos += ENTRY_BYTES;
    }
    buf.writeUInt32BE(crc32(buf.subarray(0, pos)), pos);
    const tmp = join(this.dir, `index.dat.${process.pid}.tmp`);
    writeFileSync(tmp, buf);
    renameSync(tmp, join(this.dir, "index.dat"));
  }

  /**
   * Flushes the index, writes every page still pending (the one in flight again: its bytes
   * do not change), and closes the data file once that write is done: closing under it
   * could let the descriptor be reused for another file.
   */
  close(): void {
    this.flush();
    for (const r of this.pending.splice(0))
      writeSync(this.fd, r.buf, 0, r.count * PAGE_SIZE, r.first * PAGE_SIZE);
    this.pendingBytes = 0;
    if (this.writing) {
      this.closeAfterWrite = true;
      this.closedValue = new Promise((resolve) => {
        this.fileClosed = resolve;
      });
    } else closeSync(this.fd);
  }

  /**
   * Resolves once the data file is closed: after close(), a write that was in flight may
   * still land (the same bytes close() wrote). Wait for this before anything else writes
   * the file.
   */
  whenClosed(): Promise<void> {
    return this.closedValue;
  }

  private loadIndex(capacity: number): string | null {
    const path = join(this.dir, "index.dat");
    if (!existsSync(path)) return null;
    const buf = readFileSync(path);
    if (buf.length < 20) return "index too short";
    const count = buf.readUInt32BE(12);
    const end = 16 + count * ENTRY_BYTES;
    if (
      buf.readUInt32BE(0) !== INDEX_MAGIC ||
      buf.readUInt32BE(4) !== INDEX_VERSION ||
      buf.readUInt32BE(8) !== PAGE_SIZE
    ) {
      return "index has an unknown format";
    }
    if (buf.length !== end + 4 || crc32(buf.subarray(0, end)) !== buf.readUInt32BE(end))
      return "index checksum mismatch";
    const used = new Set<number>();
    // Keep the most recent `capacity` entries when the cap shrank since the last session.
    const first = Math.max(0, count - capacity);
    for (let i = first; i < count; i++) {
      const pos = 16 + i * ENTRY_BYTES;
      const slot = buf.readUInt32BE(pos + HASH_BYTES);
      const h = buf.subarray(pos, pos + HASH_BYTES);
      if (slot >= capacity || used.has(slot) || this.has(h) || this.lru.size >= capacity) continue;
      const [hi, lo] = hashKeyParts(h);
      const clash = this.lru.find(hi, lo);
      if (clash !== -1) {
        used.delete(this.lru.value(clash, 0));
        this.lru.remove(clash);
      }
      used.add(slot);
      this.insertEntry(h, slot);
    }
    let top = -1;
    for (const s of used) if (s > top) top = s;
    this.nextSlot = top + 1;
    for (let s = 0; s < this.nextSlot; s++) if (!used.has(s)) this.free.push(s);
    return null;
  }
}
