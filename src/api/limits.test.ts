import { describe, expect, it } from "vitest";
import { isNovaError } from "../lib/errors.js";
import { EventStreams } from "./event-streams.js";
import { API_LIMITS, RateBuckets, resolveApiLimits } from "./limits.js";

describe("RateBuckets", () => {
  it("allows a burst, then one request per refill, and says how long to wait", () => {
    const b = new RateBuckets({ perSecond: 2, burst: 3 });
    const t = 1_000_000;
    expect([b.take("a", t), b.take("a", t), b.take("a", t)]).toEqual([0, 0, 0]);
    expect(b.take("a", t)).toBe(1);
    expect(b.peek("a", t)).toBe(1);
    expect(b.take("a", t + 500)).toBe(0);
    expect(b.take("a", t + 500)).toBe(1);
    // Other keys have their own budget; peek takes nothing.
    expect(b.peek("b", t)).toBe(0);
    expect(b.take("b", t)).toBe(0);
  });

  it("keeps at most maxKeys buckets, forgetting the least recently used", () => {
    const b = new RateBuckets({ perSecond: 1, burst: 1 }, 2);
    const t = 5_000_000;
    b.take("a", t);
    b.take("b", t);
    b.take("c", t);
    expect(b.take("a", t)).toBe(0); // forgotten, so full again
    expect(b.take("c", t)).toBe(1);
  });
});

describe("resolveApiLimits", () => {
  it("layers given values over $NOVACRON_API_LIMITS over the defaults", () => {
    const l = resolveApiLimits(
      { sseStreamsTotal: 9 },
      { NOVACRON_API_LIMITS: '{"sseStreamsPerToken": 2, "sseStreamsTotal": 3}' },
    );
    expect(l).toMatchObject({ sseStreamsPerToken: 2, sseStreamsTotal: 9, tokenRate: API_LIMITS.tokenRate });
  });

  it.each([
    ['{"nope": 1}', /Unknown API limit nope/],
    ['{"sseStreamsTotal": 0}', /sseStreamsTotal must be positive/],
    ['{"tokenRate": {"perSecond": -1, "burst": 2}}', /tokenRate must be positive/],
    ["{", /not JSON/],
  ])("refuses %s with NOVA_CONFIG", (raw, message) => {
    let err: unknown;
    try {
      resolveApiLimits({}, { NOVACRON_API_LIMITS: raw });
    } catch (e) {
      err = e;
    }
    expect(isNovaError(err, "NOVA_CONFIG")).toBe(true);
    expect((err as Error).message).toMatch(message);
  });
});

describe("EventStreams", () => {
  it("caps streams per principal and in total, frees slots on release, and closes a revoked principal's", () => {
    const s = new EventStreams({ sseStreamsPerToken: 2, sseStreamsTotal: 3 });
    const closed: string[] = [];
    const a1 = s.open("a", () => closed.push("a1"));
    const a2 = s.open("a", () => closed.push("a2"));
    expect(s.open("a", () => {})).toBe("sse-per-token");
    const b1 = s.open("b", () => closed.push("b1"));
    expect(s.open("c", () => {})).toBe("sse-total");
    if (typeof a1 === "string" || typeof a2 === "string" || typeof b1 === "string")
      throw new Error("refused");
    expect(s.revoke("a")).toBe(2);
    expect(closed).toEqual(["a1", "a2"]);
    a1.release();
    a2.release();
    a2.release();
    expect(s.count()).toBe(1);
    expect(s.count("a")).toBe(0);
    expect(typeof s.open("c", () => {})).toBe("object");
  });
});
