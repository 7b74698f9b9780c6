/**
 * DWCP frame format (docs/dwcp.md §3): a fixed 28-byte header followed by the payload.
 * This module owns encoding one frame and the list of frame types; decoding a byte
 * stream into frames lives in decoder.ts.
 *
 *   0  u8   type
 *   1  u8   flags
 *   2  u16  channel
 *   4  u32  payload length
 *   8  u64  sequence number (session-wide send order; 0 for unsequenced frames)
 *  16  u32  channel sequence number (1, 2, … within the channel's direction for DATA,
 *           END, END_OK and ABORT; 0 for every other type)
 *  20  u32  CRC-32 of the payload
 *  24  u32  CRC-32 of header bytes 0..23
 *
 * All integers are big-endian. The header carries its own CRC so that a corrupt length
 * is caught before the decoder trusts it to size anything.
 */
import { crc32 } from "node:zlib";

/** Size of the fixed frame header in bytes. */
export const FRAME_HEADER_BYTES = 28;

/** Largest sequence number: sequence numbers travel as u64 but stay exact JS integers. */
export const MAX_SEQ = Number.MAX_SAFE_INTEGER;

/** Frame types. Sequenced types take a session sequence number; the others use 0. */
export const FrameType = {
  /** Part of a channel message; flag MORE marks all but the last part. Sequenced. */
  DATA: 1,
  /** Opens a logical channel; payload is the channel label (UTF-8). Sequenced. */
  OPEN: 2,
  /** Ends the sender's direction of a channel; payload is u64 byte count + SHA-256. Sequenced. */
  END: 3,
  /** The receiver verified a channel direction's digest. Sequenced. */
  END_OK: 4,
  /** Aborts a channel; payload is a UTF-8 reason. Sequenced. */
  ABORT: 5,
  /** Orderly end of the session. Sequenced. */
  CLOSE: 6,
  /**
   * Acknowledgement: u64 received-through seq, u64 consumed bytes, u64 bytes received
   * (any order), u64 bytes read on the connection carrying it. Unsequenced.
   */
  ACK: 7,
  /** RTT probe; payload is an opaque token echoed by PONG. Unsequenced. */
  PING: 8,
  /** Answer to PING with the same payload. Unsequenced. */
  PONG: 9,
  /** Fatal error; payload is a UTF-8 reason. Unsequenced. */
  ERROR: 10,
  /** Capacity probe filler; the receiver only counts its bytes. Unsequenced. */
  PAD: 11,
  /**
   * Channel credit: u64 wire bytes of the channel's DATA the receiving application has
   * consumed so far (a running total, so a stale or repeated CREDIT is harmless). Unsequenced.
   */
  CREDIT: 12,
} as const;

/** A frame type value. */
export type FrameTypeValue = (typeof FrameType)[keyof typeof FrameType];

/** Frame flags. */
export const FrameFlag = {
  /** DATA: more parts of the same channel message follow. */
  MORE: 0x01,
} as const;

const KNOWN_FLAGS = FrameFlag.MORE;

/** True for frame types that consume a sequence number and are delivered in order. */
export function isSequenced(type: number): boolean {
  return type >= FrameType.DATA && type <= FrameType.CLOSE;
}

/**
 * True for the sequenced types that belong to one channel and are delivered in the order
 * of that channel alone (their channel sequence number), not of the whole session: a
 * frame held up on one connection then delays only its own channel.
 */
export function isChannelOrdered(type: number): boolean {
  return (
    type === FrameType.DATA || type === FrameType.END || type === FrameType.END_OK || type === FrameType.ABORT
  );
}

/** True when `type` is a known frame type. */
export function isKnownType(type: number): type is FrameTypeValue {
  return type >= FrameType.DATA && type <= FrameType.CREDIT;
}

/** True when `flags` uses only defined bits. */
export function flagsValid(flags: number): boolean {
  return (flags & ~KNOWN_FLAGS) === 0;
}

/** One decoded (or to-be-encoded) frame. */
export interface Frame {
  type: FrameTypeValue;
  flags: number;
  channel: number;
  seq: number;
  /** Channel sequence number: set (from 1) on channel-ordered types only. */
  chseq?: number;
  payload: Buffer;
}

/**
 * Encodes a frame's header. The payload is written separately (writev) so that large
 * payloads are never copied just to prepend the header.
 */
export function encodeHeader(frame: Frame): Buffer {
  const h = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  h.writeUInt8(frame.type, 0);
  h.writeUInt8(frame.flags, 1);
  h.writeUInt16BE(frame.channel, 2);
  h.writeUInt32BE(frame.payload.length, 4);
  h.writeBigUInt64BE(BigInt(frame.seq), 8);
  h.writeUInt32BE(frame.chseq ?? 0, 16);
  h.writeUInt32BE(crc32(frame.payload), 20);
  h.writeUInt32BE(crc32(h.subarray(0, 24)), 24);
  return h;
}

/** Encodes a whole frame into one buffer (tests and small control frames). */
export function encodeFrame(frame: Frame): Buffer {
  return Buffer.concat([encodeHeader(frame), frame.payload]);
}

/** Total bytes a frame occupies on the wire. */
export function wireSize(frame: Frame): number {
  return FRAME_HEADER_BYTES + frame.payload.length;
}
