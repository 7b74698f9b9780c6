/**
 * Incremental frame decoder (docs/dwcp.md §3.2). Owns turning an untrusted byte stream
 * into validated frames. Hostile input ends in a typed NOVA_DWCP_PROTOCOL error, never a
 * crash: the header CRC is checked before the length is trusted, the length is capped,
 * and the decoder never buffers more than one header plus one maximum payload.
 */
import { crc32 } from "node:zlib";
import { NovaError } from "../../lib/errors.js";
import {
  FRAME_HEADER_BYTES,
  type Frame,
  flagsValid,
  isChannelOrdered,
  isKnownType,
  isSequenced,
  MAX_SEQ,
} from "./frame.js";

/** Decoder limits. */
export interface DecoderOptions {
  /** Largest payload accepted; bigger frames are a protocol error. @defaultValue 1 MiB */
  maxPayload?: number;
}

/** Default largest frame payload. */
export const DEFAULT_MAX_PAYLOAD = 1024 * 1024;

function protocolError(message: string, details: Record<string, unknown> = {}): NovaError {
  return new NovaError("NOVA_DWCP_PROTOCOL", `Failed decoding DWCP frame: ${message}`, { details });
}

/**
 * Splits a byte stream into frames. Feed it chunks with `push`; it returns every
 * complete frame and keeps the partial rest. After an error the decoder is dead.
 */
export class FrameDecoder {
  readonly maxPayload: number;
  private chunks: Buffer[] = [];
  private buffered = 0;
  private header: {
    type: number;
    flags: number;
    channel: number;
    length: number;
    seq: number;
    chseq: number;
    crc: number;
  } | null = null;
  private failed: NovaError | null = null;

  constructor(options: DecoderOptions = {}) {
    this.maxPayload = options.maxPayload ?? DEFAULT_MAX_PAYLOAD;
  }

  /** Bytes currently held waiting for the rest of a frame. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** Adds bytes; returns the frames they complete. Throws NOVA_DWCP_PROTOCOL on bad input. */
  push(chunk: Buffer): Frame[] {
    if (this.failed) throw this.failed;
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const out: Frame[] = [];
    try {
      for (;;) {
        if (this.header === null) {
          if (this.buffered < FRAME_HEADER_BYTES) break;
          this.header = this.parseHeader(this.take(FRAME_HEADER_BYTES));
        }
        if (this.buffered < this.header.length) break;
        const payload = this.take(this.header.length);
        if (crc32(payload) !== this.header.crc) {
          throw protocolError("payload checksum mismatch", {
            channel: this.header.channel,
            seq: this.header.seq,
          });
        }
        const h = this.header;
        this.header = null;
        const frame: Frame = {
          type: h.type as Frame["type"],
          flags: h.flags,
          channel: h.channel,
          seq: h.seq,
          payload,
        };
        if (h.chseq > 0) frame.chseq = h.chseq;
        out.push(frame);
      }
    } catch (err) {
      this.failed = err instanceof NovaError ? err : protocolError(String(err));
      this.chunks = [];
      this.buffered = 0;
      throw this.failed;
    }
    return out;
  }

  /** Throws if the stream ended in the middle of a frame. */
  end(): void {
    if (this.failed) throw this.failed;
    if (this.buffered > 0 || this.header !== null) {
      throw protocolError("stream ended inside a frame", { bufferedBytes: this.buffered });
    }
  }

  private parseHeader(h: Buffer): NonNullable<FrameDecoder["header"]> {
    if (crc32(h.subarray(0, 24)) !== h.readUInt32BE(24)) throw protocolError("header checksum mismatch");
    const type = h.readUInt8(0);
    const flags = h.readUInt8(1);
    const channel = h.readUInt16BE(2);
    const length = h.readUInt32BE(4);
    const seqBig = h.readBigUInt64BE(8);
    if (!isKnownType(type)) throw protocolError(`unknown frame type ${type}`);
    if (!flagsValid(flags)) throw protocolError(`undefined flag bits 0x${flags.toString(16)}`);
    if (length > this.maxPayload) {
      throw protocolError(`payload of ${length} bytes exceeds the ${this.maxPayload}-byte limit`, { length });
    }
    if (seqBig > BigInt(MAX_SEQ)) throw protocolError("sequence number out of range");
    const seq = Number(seqBig);
    if (isSequenced(type) !== seq > 0) {
      throw protocolError(
        isSequenced(type)
          ? "sequenced frame without a sequence number"
          : "unsequenced frame with a sequence number",
        { type },
      );
    }
    const chseq = h.readUInt32BE(16);
    if (isChannelOrdered(type) !== chseq > 0) {
      throw protocolError(
        isChannelOrdered(type)
          ? "channel frame without a channel sequence number"
          : "channel sequence number on a frame that has none",
        { type },
      );
    }
    return { type, flags, channel, length, seq, chseq, crc: h.readUInt32BE(20) };
  }

  /** Removes exactly n buffered bytes (n <= buffered), copying only when a frame spans chunks. */
  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0]!;
    if (first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      this.buffered -= n;
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length, n - filled);
      c.copy(out, filled, 0, k);
      filled += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this.buffered -= n;
    return out;
  }
}
