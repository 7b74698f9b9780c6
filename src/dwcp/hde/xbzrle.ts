/**
 * XBZRLE delta encoding (docs/dwcp.md §7.3), the format QEMU uses for pages that changed
 * a little: the new page is described against the old one as alternating runs
 *   ULEB128(unchanged run length) ULEB128(changed run length) <changed bytes>
 * starting with an unchanged run (possibly 0). A trailing unchanged run is omitted.
 * Unchanged means old XOR new == 0 for that byte.
 */
import { NovaError } from "../../lib/errors.js";

function putUleb(out: Buffer, pos: number, v: number): number {
  while (v >= 0x80) {
    out[pos++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  out[pos++] = v;
  return pos;
}

/**
 * Encodes `next` against `prev` (same length). Returns null when the delta would exceed
 * `limit` bytes, so the caller sends the page another way.
 */
export function xbzrleEncode(prev: Buffer, next: Buffer, limit: number): Buffer | null {
  const n = next.length;
  if (prev.length !== n) throw new Error("xbzrleEncode: pages differ in length");
  const out = Buffer.allocUnsafe(limit + 16);
  let pos = 0;
  let i = 0;
  while (i < n) {
    const zStart = i;
    while (i < n && prev[i] === next[i]) i++;
    if (i === n) break;
    const zrun = i - zStart;
    const nzStart = i;
    // Extend the changed run over short unchanged gaps (< 3 bytes): a new run pair would
    // cost at least 2 header bytes anyway.
    while (i < n) {
      if (prev[i] !== next[i]) {
        i++;
        continue;
      }
      let j = i;
      while (j < n && j - i < 3 && prev[j] === next[j]) j++;
      if (j === n || j - i >= 3) break;
      i = j;
    }
    const nzrun = i - nzStart;
    if (pos + 10 + nzrun > limit) return null;
    pos = putUleb(out, pos, zrun);
    pos = putUleb(out, pos, nzrun);
    next.copy(out, pos, nzStart, i);
    pos += nzrun;
  }
  return out.subarray(0, pos);
}

function getUleb(buf: Buffer, pos: number): [number, number] {
  let v = 0;
  let shift = 0;
  for (;;) {
    if (pos >= buf.length || shift > 28)
      throw new NovaError("NOVA_DWCP_PROTOCOL", "Malformed XBZRLE delta (bad length)");
    const b = buf[pos++]!;
    v |= (b & 0x7f) << shift;
    if (b < 0x80) return [v >>> 0, pos];
    shift += 7;
  }
}

/** Applies a delta to `prev`; returns the new page. Throws NOVA_DWCP_PROTOCOL on malformed input. */
export function xbzrleDecode(prev: Buffer, delta: Buffer): Buffer {
  const out = Buffer.from(prev);
  let pos = 0;
  let i = 0;
  while (pos < delta.length) {
    let zrun: number;
    let nzrun: number;
    [zrun, pos] = getUleb(delta, pos);
    [nzrun, pos] = getUleb(delta, pos);
    i += zrun;
    if (nzrun === 0 || i + nzrun > out.length || pos + nzrun > delta.length) {
      throw new NovaError("NOVA_DWCP_PROTOCOL", "Malformed XBZRLE delta (run out of bounds)");
    }
    delta.copy(out, i, pos, pos + nzrun);
    pos += nzrun;
    i += nzrun;
  }
  return out;
}
