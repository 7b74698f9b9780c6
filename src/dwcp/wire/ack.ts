/**
 * The ACK frame payload (docs/dwcp.md §4.3): four u64 counters, 32 bytes.
 */

/** What an ACK says. */
export interface Ack {
  /** Every sequenced frame up to this one has arrived. */
  receivedThrough: number;
  /** Wire bytes of sequenced frames the application has taken: returns credit. */
  consumedBytes: number;
  /** Wire bytes of distinct sequenced frames received, in order or not: for measurement. */
  receivedBytes: number;
  /** Bytes read on the connection that carries this ACK: that connection's in-flight bytes. */
  connectionBytesRead: number;
}

/** Size of an ACK payload. */
export const ACK_BYTES = 32;

/** Encodes an ACK payload. */
export function encodeAck(a: Ack): Buffer {
  const b = Buffer.allocUnsafe(ACK_BYTES);
  b.writeBigUInt64BE(BigInt(a.receivedThrough), 0);
  b.writeBigUInt64BE(BigInt(a.consumedBytes), 8);
  b.writeBigUInt64BE(BigInt(a.receivedBytes), 16);
  b.writeBigUInt64BE(BigInt(a.connectionBytesRead), 24);
  return b;
}

/** Decodes an ACK payload; null when malformed (wrong size or counters beyond 2^53). */
export function decodeAck(b: Buffer): Ack | null {
  if (b.length !== ACK_BYTES) return null;
  const max = BigInt(Number.MAX_SAFE_INTEGER);
  const words = [0, 8, 16, 24].map((o) => b.readBigUInt64BE(o));
  if (words.some((w) => w > max)) return null;
  const [receivedThrough, consumedBytes, receivedBytes, connectionBytesRead] = words.map(Number) as [
    number,
    number,
    number,
    number,
  ];
  return { receivedThrough, consumedBytes, receivedBytes, connectionBytesRead };
}
