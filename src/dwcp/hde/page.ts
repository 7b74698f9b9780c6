/**
 * Page basics shared by every HDE level (docs/dwcp.md §7): the page size, zero-page
 * detection, content hashing, and a cheap compressibility guess. Hashes are SHA-256
 * truncated to 16 bytes: collision-safe for a cache, and SHA-NI makes it ~1 GB/s.
 */
import { hash } from "node:crypto";

/** HDE page size in bytes. */
export const PAGE_SIZE = 4096;
/** Bytes of a page content hash. */
export const HASH_BYTES = 16;
/** Bytes of the hash prefix used in cache inventories. */
export const PREFIX_BYTES = 8;

/** A page of zeros (never mutate). */
export const ZERO_PAGE: Buffer = Buffer.alloc(PAGE_SIZE);

/** True when the page is all zeros. */
export function isZeroPage(page: Buffer): boolean {
  return page.equals(ZERO_PAGE);
}

/** 16-byte content hash of a page. */
export function pageHash(page: Buffer): Buffer {
  return hash("sha256", page, "buffer").subarray(0, HASH_BYTES);
}

/** The hash of the zero page. */
export const ZERO_HASH: Buffer = pageHash(ZERO_PAGE);

/** Map key for a full hash. */
export function hashKey(h: Buffer): string {
  return h.toString("latin1", 0, HASH_BYTES);
}

/** Map key for a hash prefix (what inventories carry). */
export function prefixKey(h: Buffer): string {
  return h.toString("latin1", 0, PREFIX_BYTES);
}

const seen = new Uint8Array(256);
let epoch = 0;

/**
 * Guesses whether zstd can shrink a page by counting distinct byte values in 128
 * samples: random or already-compressed data shows ~100, text and code far fewer.
 * Costs ~1 µs, against ~10 µs for letting zstd find out.
 */
export function looksCompressible(page: Buffer): boolean {
  epoch = (epoch + 1) & 0xff;
  if (epoch === 0) {
    seen.fill(0);
    epoch = 1;
  }
  let distinct = 0;
  for (let i = 0; i < PAGE_SIZE; i += 32) {
    const v = page[i]!;
    if (seen[v] !== epoch) {
      seen[v] = epoch;
      distinct++;
    }
  }
  return distinct < 80;
}
