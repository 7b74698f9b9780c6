import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { allocate } from "./fair-share.js";
import { LinkShare } from "./link-share.js";

describe("fair sharing", () => {
  it("splits spare capacity by weight and never exceeds the link", () => {
    const a = allocate(
      100,
      [
        { id: "a", weight: 1, remainingBytes: 1e9 },
        { id: "b", weight: 3, remainingBytes: 1e9 },
      ],
      0,
    );
    expect(a.get("a")!.rateBps).toBeCloseTo(25);
    expect(a.get("b")!.rateBps).toBeCloseTo(75);
  });

  it("gives a capped transfer's unused share to the others", () => {
    const a = allocate(
      100,
      [
        { id: "a", maxBps: 10, remainingBytes: 1e9 },
        { id: "b", remainingBytes: 1e9 },
      ],
      0,
    );
    expect(a.get("a")!.rateBps).toBeCloseTo(10);
    expect(a.get("b")!.rateBps).toBeCloseTo(90);
  });

  it("meets a feasible deadline first and flags an infeasible one", () => {
    const ok = allocate(
      100,
      [
        { id: "urgent", remainingBytes: 600, deadline: 10_000 },
        { id: "bulk", weight: 10, remainingBytes: 1e9 },
      ],
      0,
    );
    expect(ok.get("urgent")!.rateBps).toBeGreaterThanOrEqual(60);
    expect(ok.get("urgent")!.atRisk).toBe(false);
    expect(ok.get("urgent")!.etaSeconds).toBeLessThanOrEqual(10);
    const bad = allocate(100, [{ id: "late", remainingBytes: 5000, deadline: 10_000 }], 0);
    expect(bad.get("late")!.atRisk).toBe(true);
  });

  it("respects minimums, weights and capacity for any mix of transfers", () => {
    fc.assert(
      fc.property(
        fc.double({ min: 1, max: 1e9, noNaN: true }),
        fc.array(
          fc.record({
            weight: fc.double({ min: 0.1, max: 10, noNaN: true }),
            minBps: fc.double({ min: 0, max: 1e8, noNaN: true }),
            remainingBytes: fc.double({ min: 1, max: 1e10, noNaN: true }),
          }),
          { minLength: 1, maxLength: 8 },
        ),
        (capacity, ts) => {
          const demands = ts.map((t, i) => ({ ...t, id: String(i) }));
          const a = allocate(capacity, demands, 0);
          const total = [...a.values()].reduce((s, x) => s + x.rateBps, 0);
          expect(total).toBeLessThanOrEqual(capacity * (1 + 1e-9));
          expect(total).toBeGreaterThanOrEqual(capacity * (1 - 1e-6));
          const minSum = demands.reduce((s, d) => s + d.minBps, 0);
          if (minSum <= capacity)
            for (const d of demands)
              expect(a.get(d.id)!.rateBps).toBeGreaterThanOrEqual(d.minBps * (1 - 1e-9));
        },
      ),
    );
  });

  it("paces transfers with token buckets at their allocated rates", async () => {
    const share = new LinkShare(4 * 1024 * 1024, 0.02);
    const a = share.join({ totalBytes: 1e9, weight: 1 });
    const b = share.join({ totalBytes: 1e9, weight: 3 });
    const sent = { a: 0, b: 0 };
    const stop = performance.now() + 600;
    await Promise.all(
      (
        [
          ["a", a],
          ["b", b],
        ] as const
      ).map(async ([k, t]) => {
        while (performance.now() < stop) {
          await t.acquire(16 * 1024);
          sent[k] += 16 * 1024;
        }
      }),
    );
    const ratio = sent.b / sent.a;
    expect(ratio).toBeGreaterThan(2.2);
    expect(ratio).toBeLessThan(4);
    expect((sent.a + sent.b) / 0.6).toBeLessThan(4 * 1024 * 1024 * 1.3);
  });
});
