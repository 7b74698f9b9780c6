/**
 * The sender's memory of what it last sent for each page (docs/dwcp.md §7.3): page number
 * -> content hash in memory, page contents in a PageCache on disk. It supplies the base
 * for XBZRLE deltas without holding a VM's memory in RAM. Share one history across the
 * passes of one transfer (pre-copy iterations, or sending the same VM again).
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { NovaError } from "../../lib/errors.js";
import { LruIndex, numberKeyParts } from "./lru-index.js";
import { HASH_BYTES } from "./page.js";
import type { PageCache } from "./page-cache.js";

const ENTRY = 6 + HASH_BYTES;

/** Last-sent versions of pages. */
export class PageHistory {
  /** Key: page number; values: the 16-byte hash as 4 words. Capped like the store. */
  private readonly last: LruIndex;

  /** @param store where page contents live (its own cache dir, not the receiver's). */
  constructor(readonly store: PageCache) {
    this.last = new LruIndex(store.capacityPages, 4);
  }

  /** Number of pages remembered. */
  get size(): number {
    return this.last.size;
  }

  /** Writes the page -> hash map to `path` (atomically), so a later process can continue. */
  save(path: string): void {
    const buf = Buffer.allocUnsafe(this.last.size * ENTRY);
    let pos = 0;
    for (const e of this.last.entries()) {
      const [hi, lo] = this.last.keyOf(e);
      buf.writeUIntBE(hi * 4294967296 + lo, pos, 6);
      for (let w = 0; w < 4; w++) buf.writeUInt32BE(this.last.value(e, w), pos + 6 + 4 * w);
      pos += ENTRY;
    }
    writeFileSync(`${path}.tmp`, buf);
    renameSync(`${path}.tmp`, path);
  }

  /** Loads a map written by save(); a missing file leaves the history empty. */
  load(path: string): void {
    if (!existsSync(path)) return;
    const buf = readFileSync(path);
    if (buf.length % ENTRY !== 0)
      throw new NovaError("NOVA_DWCP_CACHE", `Page history ${path} is truncated`, { details: { path } });
    for (let pos = 0; pos < buf.length; pos += ENTRY) {
      this.set(buf.readUIntBE(pos, 6), buf.subarray(pos + 6, pos + ENTRY));
    }
  }

  /** Hash of the last version sent for `pageNo`. */
  lastHash(pageNo: number): Buffer | undefined {
    const [hi, lo] = numberKeyParts(pageNo);
    const e = this.last.find(hi, lo);
    if (e === -1) return undefined;
    const h = Buffer.allocUnsafe(HASH_BYTES);
    for (let w = 0; w < 4; w++) h.writeUInt32BE(this.last.value(e, w), 4 * w);
    return h;
  }

  /** The content of the last version, if still stored and intact. */
  lastContent(pageNo: number): Buffer | null {
    const h = this.lastHash(pageNo);
    return h ? this.store.get(h) : null;
  }

  /** Records that `page` (hash `h`) was sent as `pageNo`; zero pages are forgotten. */
  record(pageNo: number, h: Buffer | null, page: Buffer | null): void {
    if (h === null || page === null) {
      const [hi, lo] = numberKeyParts(pageNo);
      const e = this.last.find(hi, lo);
      if (e !== -1) this.last.remove(e);
      return;
    }
    if (this.set(pageNo, h)) this.store.put(h, page);
  }

  /** Sets the hash for a page; false when it was already that. */
  private set(pageNo: number, h: Buffer): boolean {
    const [hi, lo] = numberKeyParts(pageNo);
    let e = this.last.find(hi, lo);
    if (e !== -1) {
      let same = true;
      for (let w = 0; w < 4; w++) if (this.last.value(e, w) !== h.readUInt32BE(4 * w)) same = false;
      this.last.touch(e);
      if (same) return false;
    } else {
      if (this.last.capacity === 0) return false;
      if (this.last.size >= this.last.capacity) this.last.remove(this.last.oldest());
      e = this.last.insert(hi, lo);
    }
    for (let w = 0; w < 4; w++) this.last.setValue(e, w, h.readUInt32BE(4 * w));
    return true;
  }
}
