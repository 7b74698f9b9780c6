import { createHash, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { PageDigest } from "./digest.js";

describe("page-stream digest", () => {
  it("is SHA-256 over (u64 page number, 16-byte hash) per record, however many records", () => {
    for (const records of [0, 1, 2047, 2048, 2049, 5000]) {
      const d = new PageDigest();
      const ref = createHash("sha256");
      const n8 = Buffer.alloc(8);
      for (let i = 0; i < records; i++) {
        const pageNo = i % 3 === 0 ? 2 ** 48 - 1 - i : i * 7919;
        const h = randomBytes(32).subarray(0, 16);
        d.add(pageNo, h);
        n8.writeBigUInt64BE(BigInt(pageNo));
        ref.update(n8);
        ref.update(h);
      }
      expect(d.pages).toBe(records);
      expect(d.digest().equals(ref.digest())).toBe(true);
    }
  });
});
