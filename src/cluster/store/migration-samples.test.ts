import { describe, expect, it } from "vitest";
import { nextSampleStep } from "./migration-samples.js";

describe("which progress readings become samples", () => {
  const at = 1_000_000;

  it("keeps the first reading", () => {
    expect(nextSampleStep({ everyMs: 1000, lastAt: null, count: 0 }, at)).toEqual({ kind: "append" });
  });

  it("skips a reading within the spacing and says when the next is due", () => {
    expect(nextSampleStep({ everyMs: 1000, lastAt: at, count: 1 }, at + 999)).toEqual({
      kind: "skip",
      nextAt: at + 1000,
    });
    expect(nextSampleStep({ everyMs: 1000, lastAt: at, count: 1 }, at + 1000)).toEqual({ kind: "append" });
  });

  it("skips a reading from a clock that went back", () => {
    expect(nextSampleStep({ everyMs: 1000, lastAt: at, count: 1 }, at - 5000).kind).toBe("skip");
  });

  it("keeps a forced reading within the spacing, but never two at the same instant", () => {
    const s = { everyMs: 1000, lastAt: at, count: 1 };
    expect(nextSampleStep(s, at + 1, { force: true })).toEqual({ kind: "append" });
    expect(nextSampleStep(s, at, { force: true }).kind).toBe("skip");
  });

  it("thins to half and doubles the spacing at the cap", () => {
    expect(nextSampleStep({ everyMs: 1000, lastAt: at, count: 3599 }, at + 1000)).toEqual({ kind: "append" });
    expect(nextSampleStep({ everyMs: 1000, lastAt: at, count: 3600 }, at + 1000)).toEqual({
      kind: "thin-then-append",
      everyMs: 2000,
    });
    expect(nextSampleStep({ everyMs: 2000, lastAt: at, count: 4 }, at + 2000, { cap: 4 })).toEqual({
      kind: "thin-then-append",
      everyMs: 4000,
    });
  });
});
