import { describe, expect, it } from "vitest";
import { chooseLevel } from "./level.js";

describe("zstd level choice", () => {
  it("compresses harder on slower links, never past the mode's cap, and not at all when the CPU cannot keep up", () => {
    expect(chooseLevel({ maxLevel: 6, linkBytesPerSec: 6e6 })).toBe(6);
    expect(chooseLevel({ maxLevel: 3, linkBytesPerSec: 6e6 })).toBe(3);
    expect(chooseLevel({ maxLevel: 6, linkBytesPerSec: 60e6 })).toBe(3);
    expect(chooseLevel({ maxLevel: 6, linkBytesPerSec: 1e9 })).toBe(0);
    expect(chooseLevel({ maxLevel: 0, linkBytesPerSec: 1e3 })).toBe(0);
    const slowCpu = new Map([
      [1, { bytes: 8e6, ns: 1e9 }],
      [3, { bytes: 8e6, ns: 1e9 }],
    ]);
    expect(chooseLevel({ maxLevel: 3, linkBytesPerSec: 6e6, measured: slowCpu })).toBe(0);
  });
});
