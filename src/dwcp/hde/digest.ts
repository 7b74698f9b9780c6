/**
 * The page-stream digest (docs/dwcp.md §7.6): SHA-256 over (u64 page number, 16-byte
 * content hash) for every record in stream order. Both sides compute it; the receiver
 * uses the hash it verified (or, for a reference it must still fill, the one it will
 * verify the fill against), so a match means every page arrived as sent.
 */
import { createHash, type Hash } from "node:crypto";
import { HASH_BYTES } from "./page.js";

const RECORD = 8 + HASH_BYTES;
/** Records staged before one update() call: two native calls per page cost more than the hashing. */
const STAGED = 2048;

/** Incremental page-stream digest. */
export class PageDigest {
  private readonly h: Hash = createHash("sha256");
  private readonly staging = Buffer.allocUnsafe(STAGED * RECORD);
  private staged = 0;
  pages = 0;

  /** Adds one record. */
  add(pageNo: number, contentHash: Buffer): void {
    const at = this.staged * RECORD;
    // u64 big-endian from a page number < 2^48, without a BigInt per page.
    this.staging.writeUInt32BE(Math.floor(pageNo / 4294967296), at);
    this.staging.writeUInt32BE(pageNo >>> 0, at + 4);
    contentHash.copy(this.staging, at + 8, 0, HASH_BYTES);
    this.pages++;
    if (++this.staged === STAGED) this.drain();
  }

  private drain(): void {
    if (this.staged > 0) this.h.update(this.staging.subarray(0, this.staged * RECORD));
    this.staged = 0;
  }

  /** The final 32-byte digest. */
  digest(): Buffer {
    this.drain();
    return this.h.digest();
  }
}
