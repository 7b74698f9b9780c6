import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { LruIndex } from "./lru-index.js";

describe("LRU index", () => {
  it("behaves like a Map-based LRU for any sequence of operations", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        fc.array(fc.tuple(fc.constantFrom("get", "put", "del"), fc.integer({ min: 0, max: 60 })), {
          maxLength: 400,
        }),
        (cap, ops) => {
          const idx = new LruIndex(cap, 1);
          const model = new Map<number, number>();
          for (const [op, k] of ops) {
            // Keys that collide in the low bits exercise probing and backward shifts.
            const hi = k % 3;
            const lo = k * 64;
            const e = idx.find(hi, lo);
            expect(e !== -1).toBe(model.has(k));
            if (op === "get" && e !== -1) {
              idx.touch(e);
              const v = model.get(k)!;
              model.delete(k);
              model.set(k, v);
              expect(idx.value(e)).toBe(v);
            } else if (op === "put" && e === -1) {
              if (idx.size >= cap) {
                const victim = idx.oldest();
                const [vh, vl] = idx.keyOf(victim);
                const oldestKey = model.keys().next().value!;
                expect([vh, vl]).toEqual([oldestKey % 3, oldestKey * 64]);
                idx.remove(victim);
                model.delete(oldestKey);
              }
              idx.setValue(idx.insert(hi, lo), 0, k + 1000);
              model.set(k, k + 1000);
            } else if (op === "del" && e !== -1) {
              idx.remove(e);
              model.delete(k);
            }
            expect(idx.size).toBe(model.size);
          }
          expect([...idx.entries()].map((e) => idx.value(e) - 1000)).toEqual([...model.keys()]);
        },
      ),
    );
  });
});
