import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isNovaError } from "../../lib/errors.js";
import { ChannelOrder } from "./channel-order.js";

describe("per-channel delivery order", () => {
  it("hands each channel's frames on in its own order, each once, as soon as the ones before it came", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 30 }), { minLength: 1, maxLength: 4 }).chain((counts) => {
          const frames = counts.flatMap((n, ch) => [...Array(n).keys()].map((i) => ({ ch, chseq: i + 1 })));
          return fc.shuffledSubarray(frames, { minLength: frames.length, maxLength: frames.length });
        }),
        (arrivals) => {
          const order = new ChannelOrder<string>();
          const delivered = new Map<number, number[]>();
          const arrived = new Map<number, Set<number>>();
          for (const { ch, chseq } of arrivals) {
            arrived.set(ch, (arrived.get(ch) ?? new Set()).add(chseq));
            for (const item of order.accept(ch, chseq, `${ch}:${chseq}`, true)) {
              const [c, s] = item.split(":").map(Number) as [number, number];
              delivered.set(c, [...(delivered.get(c) ?? []), s]);
            }
            // Nothing waits whose predecessors have all arrived.
            const got = delivered.get(ch) ?? [];
            let contiguous = 0;
            while (arrived.get(ch)!.has(contiguous + 1)) contiguous++;
            expect(got.length).toBe(contiguous);
          }
          for (const got of delivered.values())
            expect(got).toEqual([...Array(got.length).keys()].map((i) => i + 1));
          expect(order.heldCount).toBe(0);
        },
      ),
    );
  });

  it("holds a channel's frames until it is ready, then releases them in order", () => {
    const order = new ChannelOrder<number>();
    expect(order.accept(4, 2, 2, false)).toEqual([]);
    expect(order.accept(4, 1, 1, false)).toEqual([]);
    expect(order.holds(4, 2)).toBe(true);
    expect(order.release(4)).toEqual([1, 2]);
    expect(order.accept(4, 3, 3, true)).toEqual([3]);
    expect(order.release(6)).toEqual([]);
  });

  it("refuses a channel sequence number used twice", () => {
    const order = new ChannelOrder<number>();
    order.accept(1, 1, 1, true);
    order.accept(1, 3, 3, true);
    for (const chseq of [1, 3]) {
      let err: unknown;
      try {
        order.accept(1, chseq, 0, true);
      } catch (e) {
        err = e;
      }
      expect(isNovaError(err, "NOVA_DWCP_PROTOCOL")).toBe(true);
    }
  });

  it("numbers each channel's sends from 1", () => {
    const order = new ChannelOrder<never>();
    expect([order.nextSend(1), order.nextSend(3), order.nextSend(1), order.nextSend(1)]).toEqual([
      1, 1, 2, 3,
    ]);
  });
});
