import { describe, expect, it } from "vitest";
import { waitFor } from "./wait.js";
import { WakeableLoop } from "./wakeable-loop.js";

/** A pass that blocks until released, counting how often it ran. */
function gatedPass() {
  let runs = 0;
  let release: (() => void) | undefined;
  return {
    get runs() {
      return runs;
    },
    release: () => release?.(),
    pass: () =>
      new Promise<void>((resolve) => {
        runs++;
        release = resolve;
      }),
  };
}

describe("WakeableLoop", () => {
  it("coalesces wakes during a pass into exactly one more pass", async () => {
    const g = gatedPass();
    const loop = new WakeableLoop({ pass: g.pass, intervalMs: 60_000, onError: () => {} });
    loop.start();
    expect(g.runs).toBe(1);
    loop.wake();
    loop.wake();
    loop.wake();
    g.release();
    await waitFor(() => g.runs === 2, { timeoutMs: 2000, what: "the second pass" });
    g.release();
    await loop.current;
    expect(g.runs).toBe(2);
    await loop.stop();
  });

  it("runs again after the interval when nothing wakes it, and not after stop", async () => {
    let runs = 0;
    const loop = new WakeableLoop({
      pass: async () => {
        runs++;
      },
      intervalMs: 5,
      onError: () => {},
    });
    loop.start();
    await waitFor(() => runs >= 3, { timeoutMs: 2000, what: "three timed passes" });
    await loop.stop();
    const after = runs;
    loop.wake();
    await new Promise((r) => setImmediate(r));
    expect(runs).toBe(after);
  });

  it("reports a failing pass and keeps looping", async () => {
    const errors: unknown[] = [];
    let runs = 0;
    const loop = new WakeableLoop({
      pass: async () => {
        runs++;
        if (runs === 1) throw new Error("boom");
      },
      intervalMs: 5,
      onError: (e) => errors.push(e),
    });
    loop.start();
    await waitFor(() => runs >= 2, { timeoutMs: 2000, what: "a pass after the failure" });
    await loop.stop();
    expect(errors).toHaveLength(1);
    expect((errors[0] as Error).message).toBe("boom");
  });

  it("waits one interval before the first pass when runAtStart is false", async () => {
    let runs = 0;
    const loop = new WakeableLoop({
      pass: async () => {
        runs++;
      },
      intervalMs: 60_000,
      onError: () => {},
      runAtStart: false,
    });
    loop.start();
    await new Promise((r) => setImmediate(r));
    expect(runs).toBe(0);
    loop.wake();
    await loop.current;
    expect(runs).toBe(1);
    await loop.stop();
  });
});
