import { describe, expect, it } from "vitest";
import { RunnerGrace } from "./runner-grace.js";

describe("a transferring hand-off's runner", () => {
  it("counts as alive while it runs, and for the grace after it went missing", () => {
    let t = 0;
    const g = new RunnerGrace(10_000, () => t);
    expect(g.alive("h", true)).toBe(true);
    expect(g.alive("h", false)).toBe(true);
    t = 9_999;
    expect(g.alive("h", false)).toBe(true);
    t = 10_000;
    expect(g.alive("h", false)).toBe(false);
  });

  it("starts the grace again when the runner came back in between", () => {
    let t = 0;
    const g = new RunnerGrace(10_000, () => t);
    g.alive("h", false);
    t = 8_000;
    expect(g.alive("h", true)).toBe(true);
    t = 15_000;
    expect(g.alive("h", false)).toBe(true);
    t = 25_000;
    expect(g.alive("h", false)).toBe(false);
    g.forget("h");
    expect(g.alive("h", false)).toBe(true);
  });
});
