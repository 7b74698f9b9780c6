import { describe, expect, it } from "vitest";
import { linesAfter } from "./vm.js";

const beats = (from: number, to: number) =>
  Array.from({ length: to - from + 1 }, (_, i) => `NC-HEARTBEAT seq=${from + i}`);

describe("console lines printed since an earlier look", () => {
  it("returns the lines after where the earlier tail ended", () => {
    expect(linesAfter(beats(1, 20), beats(6, 25))).toEqual(beats(21, 25));
  });

  it("returns nothing when nothing was printed", () => {
    expect(linesAfter(beats(1, 20), beats(1, 20))).toEqual([]);
  });

  it("counts every line as new when the earlier look saw an empty log or the anchor scrolled away", () => {
    expect(linesAfter([], beats(1, 3))).toEqual(beats(1, 3));
    expect(linesAfter(beats(1, 20), beats(100, 120))).toEqual(beats(100, 120));
  });

  it("does not take a line first seen half-written for a new one once it is complete", () => {
    const before = [...beats(1, 9), "NC-HEARTBEAT se"];
    expect(linesAfter(before, [...beats(1, 12)])).toEqual(beats(11, 12));
    expect(linesAfter(["NC-HEA"], beats(1, 3))).toEqual(beats(2, 3));
  });

  it("never counts old lines as new when new output repeats them", () => {
    // A boot prints the same lines as the boot before: the later copy is the anchor, so
    // at worst new lines are missed, never old ones taken for new.
    const boot = ["NC-READY version=1", "NC-HEARTBEAT seq=1"];
    const now = [...boot, "NC-SHUTDOWN", ...boot];
    expect(linesAfter(boot, now)).toEqual([]);
    expect(linesAfter(boot, [...now, "NC-HEARTBEAT seq=2"])).toEqual(["NC-HEARTBEAT seq=2"]);
  });
});
