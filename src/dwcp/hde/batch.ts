/**
 * The HDE page batch (docs/dwcp.md §7.5): one channel message carrying up to a few
 * hundred page records, in stream order. Section A (the record table with small and
 * compressible payloads) may be zstd-compressed; section B holds the pages judged
 * incompressible, raw, so no CPU is spent trying to compress random bytes.
 *
 *   u8 kind = 3 | u8 codec A | u32 raw length A | u32 encoded length A | A | B
 *   A (raw) = u32 count, then per record: u8 op, u48 page number, op data:
 *     ZERO 0: -            FULL 1: 4096 bytes         FULL_B 2: - (next 4096 bytes of B)
 *     REF 3: 16-byte hash  DELTA 4: 16 base hash, 16 target hash, u16 n, n bytes XBZRLE
 */
import { NovaError } from "../../lib/errors.js";
import type { BatchCompressor, BoundedDecompressor } from "./codec.js";
import { HASH_BYTES, PAGE_SIZE } from "./page.js";

/** HDE message kinds (first byte of every message on an HDE channel). */
export const Msg = {
  INVENTORY: 1,
  INVENTORY_END: 2,
  BATCH: 3,
  PAGES_END: 4,
  NEED: 5,
  NEED_END: 6,
  FILLS_END: 7,
  OPAQUE: 8,
} as const;

/** Record operations. */
export const Op = { ZERO: 0, FULL: 1, FULL_B: 2, REF: 3, DELTA: 4 } as const;

/** A decoded record. `page` is set for FULL/FULL_B, `hash` for REF, base/target/delta for DELTA. */
export type PageRecord =
  | { op: typeof Op.ZERO; pageNo: number }
  | { op: typeof Op.FULL | typeof Op.FULL_B; pageNo: number; page: Buffer }
  | { op: typeof Op.REF; pageNo: number; hash: Buffer }
  | { op: typeof Op.DELTA; pageNo: number; base: Buffer; target: Buffer; delta: Buffer };

/** Largest page number (u48). */
export const MAX_PAGE_NO = 2 ** 48 - 1;

/** A built batch whose sections are not encoded yet (BatchBuilder.take()). */
export interface RawBatch {
  /** Section A, raw; its ArrayBuffer belongs to this batch alone (it may be transferred). */
  a: Buffer;
  /** Section B; its ArrayBuffer belongs to this batch alone. */
  b: Buffer;
  count: number;
}

const MIN_SECTION = 64 * 1024;

/** Accumulates records for one batch, copying each payload once into growing buffers. */
export class BatchBuilder {
  private a = Buffer.allocUnsafeSlow(MIN_SECTION);
  private lenA = 4;
  private b = Buffer.allocUnsafeSlow(MIN_SECTION);
  private lenB = 0;
  private countValue = 0;

  /** Records so far. */
  get count(): number {
    return this.countValue;
  }

  /** Uncompressed size so far. */
  get rawBytes(): number {
    return this.lenA + this.lenB;
  }

  /** Size of section A so far (what zstd would be given). */
  get rawBytesA(): number {
    return this.lenA;
  }

  private reserveA(n: number): number {
    if (this.lenA + n > this.a.length) {
      const bigger = Buffer.allocUnsafeSlow(Math.max(this.a.length * 2, this.lenA + n));
      this.a.copy(bigger, 0, 0, this.lenA);
      this.a = bigger;
    }
    const at = this.lenA;
    this.lenA += n;
    return at;
  }

  private head(op: number, pageNo: number, extra: number): number {
    if (!Number.isInteger(pageNo) || pageNo < 0 || pageNo > MAX_PAGE_NO) {
      throw new NovaError("NOVA_BAD_REQUEST", `Page number ${pageNo} is out of range`);
    }
    const at = this.reserveA(7 + extra);
    this.a.writeUInt8(op, at);
    this.a.writeUIntBE(pageNo, at + 1, 6);
    this.countValue++;
    return at + 7;
  }

  /** A zero page. */
  zero(pageNo: number): void {
    this.head(Op.ZERO, pageNo, 0);
  }

  /** A full page, in section A (compressible) or B (raw). The bytes are copied. */
  full(pageNo: number, page: Buffer, compressible: boolean): void {
    if (compressible) {
      // head() may grow this.a: take the offset before naming the buffer.
      const at = this.head(Op.FULL, pageNo, PAGE_SIZE);
      page.copy(this.a, at, 0, PAGE_SIZE);
      return;
    }
    this.head(Op.FULL_B, pageNo, 0);
    if (this.lenB + PAGE_SIZE > this.b.length) {
      const bigger = Buffer.allocUnsafeSlow(this.b.length * 2);
      this.b.copy(bigger, 0, 0, this.lenB);
      this.b = bigger;
    }
    page.copy(this.b, this.lenB, 0, PAGE_SIZE);
    this.lenB += PAGE_SIZE;
  }

  /** A reference to a page the receiver holds. */
  ref(pageNo: number, hash: Buffer): void {
    const at = this.head(Op.REF, pageNo, HASH_BYTES);
    hash.copy(this.a, at, 0, HASH_BYTES);
  }

  /** An XBZRLE delta against the page with hash `base`. */
  delta(pageNo: number, base: Buffer, target: Buffer, delta: Buffer): void {
    const at = this.head(Op.DELTA, pageNo, 2 * HASH_BYTES + 2 + delta.length);
    base.copy(this.a, at, 0, HASH_BYTES);
    target.copy(this.a, at + HASH_BYTES, 0, HASH_BYTES);
    this.a.writeUInt16BE(delta.length, at + 2 * HASH_BYTES);
    delta.copy(this.a, at + 2 * HASH_BYTES + 2);
  }

  /** Encodes the batch message and resets the builder (its buffers are reused). */
  finish(compressor: BatchCompressor): Buffer {
    this.a.writeUInt32BE(this.countValue, 0);
    const rawA = this.a.subarray(0, this.lenA);
    const [codec, encA] = compressor.compress(rawA);
    const msg = assembleBatch(codec, rawA.length, encA, this.b.subarray(0, this.lenB));
    this.lenA = 4;
    this.lenB = 0;
    this.countValue = 0;
    return msg;
  }

  /**
   * Hands the batch's raw sections over (to be encoded elsewhere, e.g. on a worker thread)
   * and starts the next batch in new buffers, sized like this one's so that a steady
   * stream does not grow them again by doubling every batch.
   */
  take(): RawBatch {
    this.a.writeUInt32BE(this.countValue, 0);
    const out: RawBatch = {
      a: this.a.subarray(0, this.lenA),
      b: this.b.subarray(0, this.lenB),
      count: this.countValue,
    };
    this.a = Buffer.allocUnsafeSlow(Math.max(MIN_SECTION, this.lenA));
    this.b = Buffer.allocUnsafeSlow(Math.max(MIN_SECTION, this.lenB));
    this.lenA = 4;
    this.lenB = 0;
    this.countValue = 0;
    return out;
  }
}

/** The BATCH message: header, section A as encoded, section B. */
export function assembleBatch(codec: number, rawLengthA: number, encodedA: Buffer, b: Buffer): Buffer {
  const msg = Buffer.allocUnsafe(10 + encodedA.length + b.length);
  msg.writeUInt8(Msg.BATCH, 0);
  msg.writeUInt8(codec, 1);
  msg.writeUInt32BE(rawLengthA, 2);
  msg.writeUInt32BE(encodedA.length, 6);
  encodedA.copy(msg, 10);
  b.copy(msg, 10 + encodedA.length);
  return msg;
}

function bad(what: string): NovaError {
  return new NovaError("NOVA_DWCP_PROTOCOL", `Malformed HDE batch: ${what}`);
}

/** A BATCH message's sections, section A still encoded. */
export interface BatchSections {
  codec: number;
  rawLengthA: number;
  encodedA: Buffer;
  b: Buffer;
}

/** Splits a BATCH message into its sections; throws NOVA_DWCP_PROTOCOL on a bad header. */
export function splitBatch(msg: Buffer): BatchSections {
  if (msg.length < 10 || msg[0] !== Msg.BATCH) throw bad("short header");
  const codec = msg.readUInt8(1);
  const rawLengthA = msg.readUInt32BE(2);
  const encLen = msg.readUInt32BE(6);
  if (10 + encLen > msg.length) throw bad("section A overruns the message");
  return { codec, rawLengthA, encodedA: msg.subarray(10, 10 + encLen), b: msg.subarray(10 + encLen) };
}

/** Decodes a BATCH message into records; throws NOVA_DWCP_PROTOCOL on any inconsistency. */
export function decodeBatch(msg: Buffer, dec: BoundedDecompressor, maxRawA: number): PageRecord[] {
  const s = splitBatch(msg);
  return decodeRecords(dec.decompress(s.codec, s.encodedA, s.rawLengthA, maxRawA), s.b);
}

/** Decodes a batch's records from section A (raw) and section B; NOVA_DWCP_PROTOCOL on any inconsistency. */
export function decodeRecords(a: Buffer, b: Buffer): PageRecord[] {
  if (b.length % PAGE_SIZE !== 0) throw bad("section B is not whole pages");
  if (a.length < 4) throw bad("no record count");
  const count = a.readUInt32BE(0);
  if (count > a.length) throw bad("record count exceeds the section");
  const out: PageRecord[] = [];
  let pos = 4;
  let bPos = 0;
  const need = (n: number): void => {
    if (pos + n > a.length) throw bad("record overruns section A");
  };
  for (let i = 0; i < count; i++) {
    need(7);
    const op = a.readUInt8(pos);
    const pageNo = a.readUIntBE(pos + 1, 6);
    pos += 7;
    switch (op) {
      case Op.ZERO:
        out.push({ op, pageNo });
        break;
      case Op.FULL:
        need(PAGE_SIZE);
        out.push({ op, pageNo, page: a.subarray(pos, pos + PAGE_SIZE) });
        pos += PAGE_SIZE;
        break;
      case Op.FULL_B:
        if (bPos + PAGE_SIZE > b.length) throw bad("section B has fewer pages than records");
        out.push({ op, pageNo, page: b.subarray(bPos, bPos + PAGE_SIZE) });
        bPos += PAGE_SIZE;
        break;
      case Op.REF:
        need(HASH_BYTES);
        out.push({ op, pageNo, hash: a.subarray(pos, pos + HASH_BYTES) });
        pos += HASH_BYTES;
        break;
      case Op.DELTA: {
        need(2 * HASH_BYTES + 2);
        const base = a.subarray(pos, pos + HASH_BYTES);
        const target = a.subarray(pos + HASH_BYTES, pos + 2 * HASH_BYTES);
        const n = a.readUInt16BE(pos + 2 * HASH_BYTES);
        pos += 2 * HASH_BYTES + 2;
        need(n);
        out.push({ op, pageNo, base, target, delta: a.subarray(pos, pos + n) });
        pos += n;
        break;
      }
      default:
        throw bad(`unknown op ${op}`);
    }
  }
  if (pos !== a.length) throw bad("trailing bytes in section A");
  if (bPos !== b.length) throw bad("section B has more pages than records");
  return out;
}
