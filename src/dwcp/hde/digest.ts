/**
 * The page-stream digest (docs/dwcp.md §7.6): SHA-256 over (u64 page number, 16-byte
 * content hash) for every record in stream order. Both sides compute it; the receiver
 * uses the hash it verified (or, for a reference it must still fill, the one it will
 * verify the fill against), so a match means every page arrived as sent.
 */
import { createHash, type Hash } from "node:crypto";

/** Incremental page-stream digest. */
export class PageDigest {
  private readonly h: Hash = createHash("sha256");
  private readonly scratch = Buffer.allocUnsafe(8);
  pages = 0;

  /** Adds one record. */
  add(pageNo: number, contentHash: Buffer): void {
    this.scratch.writeBigUInt64BE(BigInt(pageNo), 0);
    this.h.update(this.scratch);
    this.h.update(contentHash);
    this.pages++;
  }

  /** The final 32-byte digest. */
  digest(): Buffer {
    return this.h.digest();
  }
}
