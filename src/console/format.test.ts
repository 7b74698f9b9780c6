import { describe, expect, it } from "vitest";
import { bytes, duration, percent } from "./format.js";

describe("the console's formats", () => {
  it("writes sizes, durations and shares", () => {
    expect(bytes(512)).toBe("512 B");
    expect(bytes(1536)).toBe("1.5 KiB");
    expect(bytes(3 * 1024 ** 3)).toBe("3.0 GiB");
    expect(bytes(undefined)).toBe("—");
    expect(duration(850)).toBe("850 ms");
    expect(duration(12_400)).toBe("12.4 s");
    expect(duration(185_000)).toBe("3 min 5 s");
    expect(percent(1, 3)).toBe(33);
    expect(percent(5, 0)).toBe(0);
    expect(percent(7, 5)).toBe(100);
  });
});
