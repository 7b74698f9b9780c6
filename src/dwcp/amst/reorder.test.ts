import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ReorderBuffer } from "./reorder.js";

describe("reorder buffer", () => {
  it("delivers every item exactly once, in order, whatever the arrival order and duplicates", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 200 }).chain((n) =>
          fc.tuple(
            fc.constant(n),
            fc.shuffledSubarray(
              [...Array(n).keys()].map((i) => i + 1),
              { minLength: n, maxLength: n },
            ),
            fc.array(fc.integer({ min: 1, max: n }), { maxLength: 50 }),
          ),
        ),
        ([n, order, dups]) => {
          const rb = new ReorderBuffer<number>({ maxAheadFrames: 1000, maxBytes: 1_000_000 });
          const out: number[] = [];
          const arrivals = [...order];
          for (const d of dups) arrivals.splice(d % (arrivals.length + 1), 0, d);
          for (const s of arrivals) {
            rb.accept(s, s, 10);
            out.push(...rb.drain());
          }
          expect(out).toEqual([...Array(n).keys()].map((i) => i + 1));
          expect(rb.heldBytes).toBe(0);
          expect(rb.receivedThrough).toBe(n);
        },
      ),
    );
  });

  it("refuses frames beyond its horizon or byte budget", () => {
    const rb = new ReorderBuffer<number>({ maxAheadFrames: 4, maxBytes: 25 });
    expect(() => rb.accept(6, 6, 1)).toThrow(/ahead/);
    rb.accept(2, 2, 10);
    rb.accept(3, 3, 10);
    expect(() => rb.accept(4, 4, 10)).toThrow(/budget/);
    expect(rb.accept(2, 2, 10)).toBe("duplicate");
  });
  it("stops counting a frame delivered before its turn, but keeps its place", () => {
    const rb = new ReorderBuffer<number>({ maxAheadFrames: 10, maxBytes: 100 });
    rb.accept(2, 2, 60);
    rb.release(2);
    expect(rb.heldBytes).toBe(0);
    // Its bytes no longer count against the budget...
    rb.accept(3, 3, 90);
    // ...but it is still a duplicate if it comes again, and still drains in order.
    expect(rb.accept(2, 2, 60)).toBe("duplicate");
    expect(rb.drain()).toEqual([]);
    rb.accept(1, 1, 5);
    expect(rb.drain()).toEqual([1, 2, 3]);
    expect(rb.receivedThrough).toBe(3);
    expect(rb.heldBytes).toBe(0);
  });
});
