/**
 * A queue of input chunks read by position from its head, for the migration stream
 * parser: records are interpreted where they lie, across chunk boundaries, and handed out
 * as slices of the input (no copy of page data).
 */

const TWO32 = 2 ** 32;

/** A queue of input chunks read by absolute position from its head. */
export class ByteQueue {
  private chunks: Buffer[] = [];
  private head = 0;
  length = 0;

  push(b: Buffer): void {
    if (b.length === 0) return;
    this.chunks.push(b);
    this.length += b.length;
  }

  u8(i: number): number {
    let pos = this.head + i;
    for (const c of this.chunks) {
      if (pos < c.length) return c[pos]!;
      pos -= c.length;
    }
    throw new RangeError("ByteQueue.u8 past the end");
  }

  /** Copies `n` bytes at `i` (small reads only). */
  peek(i: number, n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    for (let k = 0; k < n; k++) out[k] = this.u8(i + k);
    return out;
  }

  u16(i: number): number {
    return (this.u8(i) << 8) | this.u8(i + 1);
  }

  u32(i: number): number {
    return this.peek(i, 4).readUInt32BE(0);
  }

  /** A be64 as a number; null when it does not fit 2^53. */
  u64(i: number): number | null {
    const b = this.peek(i, 8);
    const hi = b.readUInt32BE(0);
    if (hi >= 2 ** 21) return null;
    return hi * TWO32 + b.readUInt32BE(4);
  }

  /** Removes `n` bytes, returned as slices of the input (no copy). */
  take(n: number): Buffer[] {
    const out: Buffer[] = [];
    let left = n;
    while (left > 0) {
      const c = this.chunks[0]!;
      const avail = c.length - this.head;
      if (avail <= left) {
        out.push(this.head === 0 ? c : c.subarray(this.head));
        this.chunks.shift();
        this.head = 0;
        left -= avail;
      } else {
        out.push(c.subarray(this.head, this.head + left));
        this.head += left;
        left = 0;
      }
    }
    this.length -= n;
    return out;
  }

  /** Removes `n` bytes as one buffer (a slice when contiguous, else a copy). */
  takeOne(n: number): Buffer {
    const parts = this.take(n);
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, n);
  }
}
