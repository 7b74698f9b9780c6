/**
 * The pure per-batch work of HDE that may run on a worker thread (docs/dwcp.md §7.8), and
 * the messages that carry it: encoding a built batch's section A with zstd on the sender,
 * and on the receiver decompressing a batch and hashing its full pages. Nothing here
 * touches a cache, a mirror, a history or a channel: those stay with the page stream on
 * the event loop, which applies the results in stream order.
 */
import { NovaError } from "../../lib/errors.js";
import { decodeRecords, Op, splitBatch } from "./batch.js";
import {
  BatchCompressor,
  type BoundedDecompressor,
  Codec,
  type LevelCompressors,
  pickEncoding,
} from "./codec.js";
import { HASH_BYTES, pageHash } from "./page.js";

/** A section A encoded: the codec chosen, its body, and the nanoseconds zstd took. */
export interface EncodedSection {
  codec: number;
  body: Buffer;
  ns: number;
}

/** Encodes a batch's raw section A at `level` (0 = off), with the raw-fallback rule. */
export function encodeSection(zstd: LevelCompressors, level: number, raw: Buffer): EncodedSection {
  if (BatchCompressor.skips(level, raw.length)) return { codec: Codec.RAW, body: raw, ns: 0 };
  const t0 = process.hrtime.bigint();
  const [codec, body] = pickEncoding(raw, zstd.compress(level, raw));
  return { codec, body, ns: Number(process.hrtime.bigint() - t0) };
}

/** A batch decompressed and checked, with the hash of each full page in record order. */
export interface DecodedSections {
  a: Buffer;
  b: Buffer;
  /** 16 bytes per FULL or FULL_B record, in record order. */
  hashes: Buffer;
}

/**
 * Decompresses a BATCH message (bounded, §7.4), validates its records and hashes every
 * full page, so that the receiver's event loop only applies them. NOVA_DWCP_PROTOCOL on
 * any malformed input, exactly as decodeBatch().
 */
export function decodeSections(dec: BoundedDecompressor, msg: Buffer, maxRawA: number): DecodedSections {
  const s = splitBatch(msg);
  const a = dec.decompress(s.codec, s.encodedA, s.rawLengthA, maxRawA);
  const records = decodeRecords(a, s.b);
  let full = 0;
  for (const r of records) if (r.op === Op.FULL || r.op === Op.FULL_B) full++;
  const hashes = Buffer.allocUnsafeSlow(full * HASH_BYTES);
  let at = 0;
  for (const r of records) {
    if (r.op !== Op.FULL && r.op !== Op.FULL_B) continue;
    pageHash(r.page).copy(hashes, at);
    at += HASH_BYTES;
  }
  return { a, b: s.b, hashes };
}

/** Main thread -> worker. Buffers travel as transferred ArrayBuffers. */
export type JobRequest =
  | { id: number; op: "encode"; level: number; raw: Uint8Array }
  | { id: number; op: "decode"; msg: Uint8Array; maxRawA: number };

/** Worker -> main thread. */
export type JobReply =
  | { id: number; ok: true; op: "encode"; codec: number; body: Uint8Array; ns: number }
  | { id: number; ok: true; op: "decode"; a: Uint8Array; b: Uint8Array; hashes: Uint8Array }
  | { id: number; ok: false; code: string; message: string };

/** A Buffer over a transferred Uint8Array, without copying. */
export function asBuffer(u: Uint8Array): Buffer {
  return Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

/** An error raised by a job, as it crosses back to the main thread. */
export function errorReply(id: number, err: unknown): JobReply {
  if (err instanceof NovaError) return { id, ok: false, code: err.code, message: err.message };
  return {
    id,
    ok: false,
    code: "NOVA_DWCP_WORKER",
    message: err instanceof Error ? err.message : String(err),
  };
}
