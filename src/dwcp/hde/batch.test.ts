import { randomBytes } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isNovaError } from "../../lib/errors.js";
import { BatchBuilder, decodeBatch, Op } from "./batch.js";
import { BatchCompressor, BoundedDecompressor } from "./codec.js";
import { looksCompressible } from "./page.js";

const text = Buffer.from(
  "the kernel maps pages of memory into the process address space ".repeat(70),
).subarray(0, 4096);

describe("HDE batch", () => {
  it("round-trips every record kind in order, compressed or not", () => {
    for (const level of [0, 3]) {
      const b = new BatchBuilder();
      const rnd = randomBytes(4096);
      b.zero(1);
      b.full(2, text, true);
      b.full(3, rnd, false);
      b.ref(4, Buffer.alloc(16, 4));
      b.delta(2 ** 40, Buffer.alloc(16, 1), Buffer.alloc(16, 2), Buffer.from([0, 3, 1, 2, 3]));
      const msg = b.finish(new BatchCompressor(level));
      const recs = decodeBatch(msg, new BoundedDecompressor(), 1 << 20);
      expect(recs.map((r) => [r.op, r.pageNo])).toEqual([
        [Op.ZERO, 1],
        [Op.FULL, 2],
        [Op.FULL_B, 3],
        [Op.REF, 4],
        [Op.DELTA, 2 ** 40],
      ]);
      expect((recs[1] as { page: Buffer }).page.equals(text)).toBe(true);
      expect((recs[2] as { page: Buffer }).page.equals(rnd)).toBe(true);
      if (level > 0) expect(msg.length).toBeLessThan(4096 + 4096);
    }
  });

  it("tells text from random bytes", () => {
    expect(looksCompressible(text)).toBe(true);
    expect(looksCompressible(randomBytes(4096))).toBe(false);
  });

  it("rejects mutated batches with a typed error and bounded allocation", () => {
    const b = new BatchBuilder();
    b.full(2, text, true);
    b.ref(4, Buffer.alloc(16, 4));
    b.full(5, randomBytes(4096), false);
    const good = b.finish(new BatchCompressor(3));
    fc.assert(
      fc.property(
        fc.array(fc.record({ at: fc.nat(), v: fc.integer({ min: 0, max: 255 }) }), {
          minLength: 1,
          maxLength: 6,
        }),
        fc.nat(good.length),
        (muts, cut) => {
          const m = Buffer.from(good.subarray(0, Math.max(cut, good.length - 3)));
          for (const { at, v } of muts) m.writeUInt8(v, at % m.length);
          try {
            decodeBatch(m, new BoundedDecompressor(), 1 << 16);
          } catch (err) {
            expect(isNovaError(err, "NOVA_DWCP_PROTOCOL")).toBe(true);
          }
        },
      ),
      { numRuns: 1500 },
    );
  });
});
