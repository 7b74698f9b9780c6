/**
 * Messages of the migration relay's control channel (docs/migration-stream.md, "Relay
 * protocol"): how the non-page bytes of a QEMU stream and the positions of its pages
 * travel, plus the small messages going back (return path, progress, verdict). Owns
 * encoding, zstd with a hard output bound, and strict decoding of untrusted input.
 *
 *   source → destination                      destination → source
 *   1 SEGMENT u8 codec, u32 raw len, body     4 RETURN  bytes (QEMU's return path)
 *   2 END u64 bytes, 32-byte SHA-256,         5 PROGRESS u64 stream bytes written to QEMU
 *         u64 pages, u8 flags                 6 VERDICT u8 ok, u64 bytes written
 *   4 RETURN (unused this way)
 *
 * A segment body is a list of items, in stream order:
 *   0 BYTES varint length, bytes        verbatim stream bytes
 *   1 PAGES varint n                    the next n pages of the page channel
 *   2 HEADER_PAGE 8 bytes               8 verbatim bytes, then the next page
 */
import { Compressor } from "zstd-napi";
import binding from "zstd-napi/binding.js";
import { NovaError } from "../../lib/errors.js";

export const CtlMsg = {
  SEGMENT: 1,
  END: 2,
  RETURN: 4,
  PROGRESS: 5,
  VERDICT: 6,
} as const;

export const Item = { BYTES: 0, PAGES: 1, HEADER_PAGE: 2 } as const;

export const SegmentCodec = { RAW: 0, ZSTD: 1 } as const;

/** Largest decoded segment accepted (the sender flushes far below this). */
export const MAX_SEGMENT_RAW = 4 * 1024 * 1024;

/** A decoded segment item. */
export type SegmentItem = { kind: "bytes"; data: Buffer } | { kind: "pages"; count: number };

function protocol(message: string): NovaError {
  return new NovaError("NOVA_DWCP_PROTOCOL", `Migration relay: ${message}`);
}

/** Accumulates items for one segment. */
export class SegmentBuilder {
  private parts: Buffer[] = [];
  private size = 0;
  private pagesValue = 0;
  private pendingPages = 0;

  /** Raw bytes so far. */
  get rawBytes(): number {
    return this.size + (this.pendingPages > 0 ? 6 : 0);
  }

  /** Pages referenced so far. */
  get pages(): number {
    return this.pagesValue;
  }

  get empty(): boolean {
    return this.size === 0 && this.pendingPages === 0;
  }

  bytes(data: Buffer): void {
    if (data.length === 0) return;
    this.closePages();
    const head = Buffer.allocUnsafe(1 + varintSize(data.length));
    head[0] = Item.BYTES;
    writeVarint(head, 1, data.length);
    this.push(head);
    this.push(data);
  }

  /** One page follows, optionally preceded by its 8-byte record header. */
  page(header?: Buffer): void {
    this.pagesValue++;
    if (header && header.length === 8) {
      this.closePages();
      const b = Buffer.allocUnsafe(9);
      b[0] = Item.HEADER_PAGE;
      header.copy(b, 1);
      this.push(b);
      return;
    }
    if (header) this.bytes(header);
    this.pendingPages++;
  }

  private closePages(): void {
    if (this.pendingPages === 0) return;
    const b = Buffer.allocUnsafe(1 + varintSize(this.pendingPages));
    b[0] = Item.PAGES;
    writeVarint(b, 1, this.pendingPages);
    this.push(b);
    this.pendingPages = 0;
  }

  private push(b: Buffer): void {
    this.parts.push(b);
    this.size += b.length;
  }

  /** The raw body; resets the builder. */
  take(): { body: Buffer; pages: number } {
    this.closePages();
    const body = Buffer.concat(this.parts, this.size);
    const pages = this.pagesValue;
    this.parts = [];
    this.size = 0;
    this.pagesValue = 0;
    return { body, pages };
  }
}

/** Compresses segment bodies; incompressible ones go raw. */
export class SegmentCompressor {
  private readonly cctx: Compressor | null;

  constructor(level: number) {
    this.cctx = level > 0 ? new Compressor() : null;
    this.cctx?.setParameters({ compressionLevel: level, contentSizeFlag: true });
  }

  /** A SEGMENT message for `body`. */
  encode(body: Buffer): Buffer {
    let codec: number = SegmentCodec.RAW;
    let payload = body;
    if (this.cctx && body.length >= 64) {
      const z = this.cctx.compress(body);
      if (z.length < body.length * 0.95) {
        codec = SegmentCodec.ZSTD;
        payload = z;
      }
    }
    const head = Buffer.allocUnsafe(6);
    head[0] = CtlMsg.SEGMENT;
    head[1] = codec;
    head.writeUInt32BE(body.length, 2);
    return Buffer.concat([head, payload]);
  }
}

/** Decodes SEGMENT messages with a bounded output size. */
export class SegmentDecoder {
  private readonly dctx = new binding.DCtx();

  /** The items of a SEGMENT message. */
  decode(msg: Buffer): SegmentItem[] {
    return parseItems(this.body(msg));
  }

  /** The decompressed body of a SEGMENT message. */
  body(msg: Buffer): Buffer {
    if (msg.length < 6 || msg[0] !== CtlMsg.SEGMENT) throw protocol("malformed segment");
    const codec = msg[1];
    const raw = msg.readUInt32BE(2);
    if (raw > MAX_SEGMENT_RAW) throw protocol(`segment of ${raw} bytes exceeds the limit`);
    const payload = msg.subarray(6);
    let body: Buffer;
    if (codec === SegmentCodec.RAW) {
      if (payload.length !== raw) throw protocol("raw segment length mismatch");
      body = payload;
    } else if (codec === SegmentCodec.ZSTD) {
      body = Buffer.allocUnsafe(raw);
      let n: number;
      try {
        n = this.dctx.decompress(body, payload);
      } catch (err) {
        throw protocol(`corrupt zstd segment: ${(err as Error).message}`);
      }
      if (n !== raw) throw protocol("zstd segment shorter than declared");
    } else {
      throw protocol(`unknown segment codec ${codec}`);
    }
    return body;
  }
}

/** Splits a segment body into items; rejects anything malformed. */
export function parseItems(body: Buffer): SegmentItem[] {
  const items: SegmentItem[] = [];
  let pos = 0;
  while (pos < body.length) {
    const tag = body[pos++];
    if (tag === Item.HEADER_PAGE) {
      if (pos + 8 > body.length) throw protocol("truncated page header item");
      items.push({ kind: "bytes", data: body.subarray(pos, pos + 8) }, { kind: "pages", count: 1 });
      pos += 8;
      continue;
    }
    const [n, next] = readVarint(body, pos);
    pos = next;
    if (tag === Item.BYTES) {
      if (n === 0 || pos + n > body.length) throw protocol("bad bytes item");
      items.push({ kind: "bytes", data: body.subarray(pos, pos + n) });
      pos += n;
    } else if (tag === Item.PAGES) {
      if (n === 0) throw protocol("empty pages item");
      items.push({ kind: "pages", count: n });
    } else {
      throw protocol(`unknown segment item ${tag}`);
    }
  }
  return items;
}

/** END: the source's account of the whole stream. */
export interface StreamEnd {
  bytes: number;
  sha256: Buffer;
  pages: number;
  /** The parser saw the stream stop inside a record it was interpreting. */
  truncated: boolean;
}

export function encodeEnd(e: StreamEnd): Buffer {
  const b = Buffer.alloc(1 + 8 + 32 + 8 + 1);
  b[0] = CtlMsg.END;
  b.writeBigUInt64BE(BigInt(e.bytes), 1);
  e.sha256.copy(b, 9);
  b.writeBigUInt64BE(BigInt(e.pages), 41);
  b[49] = e.truncated ? 1 : 0;
  return b;
}

export function decodeEnd(m: Buffer): StreamEnd {
  if (m.length !== 50 || m[0] !== CtlMsg.END || (m[49]! & ~1) !== 0) throw protocol("malformed END");
  return {
    bytes: Number(m.readBigUInt64BE(1)),
    sha256: Buffer.from(m.subarray(9, 41)),
    pages: Number(m.readBigUInt64BE(41)),
    truncated: m[49] === 1,
  };
}

export function encodeCounter(kind: typeof CtlMsg.PROGRESS, n: number): Buffer {
  const b = Buffer.alloc(9);
  b[0] = kind;
  b.writeBigUInt64BE(BigInt(n), 1);
  return b;
}

export function encodeVerdict(ok: boolean, bytes: number): Buffer {
  const b = Buffer.alloc(10);
  b[0] = CtlMsg.VERDICT;
  b[1] = ok ? 1 : 0;
  b.writeBigUInt64BE(BigInt(bytes), 2);
  return b;
}

/** Decodes PROGRESS (u64) or VERDICT (u8 ok, u64 bytes). */
export function decodeCounter(m: Buffer): number {
  if (m.length !== 9) throw protocol("malformed progress");
  return Number(m.readBigUInt64BE(1));
}

export function decodeVerdict(m: Buffer): { ok: boolean; bytes: number } {
  if (m.length !== 10 || m[1]! > 1) throw protocol("malformed verdict");
  return { ok: m[1] === 1, bytes: Number(m.readBigUInt64BE(2)) };
}

function varintSize(n: number): number {
  let s = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    s++;
  }
  return s;
}

function writeVarint(b: Buffer, pos: number, n: number): number {
  while (n >= 0x80) {
    b[pos++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  b[pos++] = n;
  return pos;
}

function readVarint(b: Buffer, pos: number): [number, number] {
  let n = 0;
  let mul = 1;
  for (let i = 0; i < 5; i++) {
    if (pos >= b.length) throw protocol("truncated varint");
    const byte = b[pos++]!;
    n += (byte & 0x7f) * mul;
    if ((byte & 0x80) === 0) return [n, pos];
    mul *= 128;
  }
  throw protocol("varint too long");
}
