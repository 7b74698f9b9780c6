import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isNovaError } from "../../lib/errors.js";
import { xbzrleDecode, xbzrleEncode } from "./xbzrle.js";

const pageArb = fc.uint8Array({ minLength: 4096, maxLength: 4096 }).map((a) => Buffer.from(a));
const editsArb = fc.array(
  fc.record({ at: fc.nat(4095), bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }),
  { maxLength: 20 },
);

describe("XBZRLE delta", () => {
  it("rebuilds the new page exactly from the old one", () => {
    fc.assert(
      fc.property(pageArb, editsArb, (old, edits) => {
        const next = Buffer.from(old);
        for (const e of edits) Buffer.from(e.bytes).copy(next, e.at);
        const delta = xbzrleEncode(old, next, 8192);
        expect(delta).not.toBeNull();
        expect(xbzrleDecode(old, delta!).equals(next)).toBe(true);
      }),
    );
  });

  it("is small for a small change and gives up past the limit", () => {
    const old = Buffer.alloc(4096, 7);
    const next = Buffer.from(old);
    next.write("changed", 1000);
    expect(xbzrleEncode(old, next, 2048)!.length).toBeLessThan(16);
    expect(xbzrleEncode(old, Buffer.alloc(4096, 9), 2048)).toBeNull();
    expect(xbzrleEncode(old, old, 10)!.length).toBe(0);
  });

  it("rejects malformed deltas with a typed error", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (junk) => {
        try {
          xbzrleDecode(Buffer.alloc(4096), Buffer.from(junk));
        } catch (err) {
          expect(isNovaError(err, "NOVA_DWCP_PROTOCOL")).toBe(true);
        }
      }),
    );
  });
});
