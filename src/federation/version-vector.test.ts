import { describe, expect, it } from "vitest";
import { advanceVector, lagOf } from "./version-vector.js";

describe("advanceVector", () => {
  const asked = { a: 1, b: 2, c: 3 };
  const sender = { a: 10, b: 20, c: 30 };

  it("moves every asked origin to the sender's vector when the answer was whole", () => {
    expect(advanceVector(asked, sender, [{ origin: "a", version: 4 }], false)).toEqual(sender);
  });

  it("stops at the cut: earlier origins whole, the cut origin at its last record, later ones unchanged", () => {
    const recs = [
      { origin: "a", version: 9 },
      { origin: "b", version: 7 },
    ];
    expect(advanceVector(asked, sender, recs, true)).toEqual({ a: 10, b: 7, c: 3 });
  });

  it("never lowers an entry and ignores origins not asked for", () => {
    expect(advanceVector({ a: 50 }, { a: 10, z: 99 }, [], false)).toEqual({ a: 50 });
  });

  it("measures lag", () => {
    expect(lagOf({ a: 3 }, { a: 10 }, "a")).toBe(7);
    expect(lagOf({ a: 30 }, { a: 10 }, "a")).toBe(0);
  });
});
