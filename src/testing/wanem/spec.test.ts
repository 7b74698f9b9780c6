import { describe, expect, it } from "vitest";
import { directionArg, parseLinkSpec, specRttMs, splitSpec } from "./spec.js";

describe("link specs", () => {
  it("expands the named profiles", () => {
    expect(parseLinkSpec("dc").kind).toBe("veth");
    const wan = parseLinkSpec("wan");
    if (wan.kind !== "emulated") throw new Error("expected emulated");
    expect(wan.ab).toMatchObject({ rateBps: 100e6, delayMs: 25, loss: 0.001 });
    expect(specRttMs(wan)).toBe(50);
    expect(wan.ab.queueBytes).toBe(625_000);
  });

  it("parses ad-hoc specs and rejects nonsense", () => {
    const s = parseLinkSpec("rate=20mbit,rtt=250ms,loss=1%,jitter=2ms,burst=4");
    if (s.kind !== "emulated") throw new Error("expected emulated");
    expect(s.ba).toMatchObject({ rateBps: 20e6, delayMs: 125, jitterMs: 2, loss: 0.01, burst: 4 });
    expect(directionArg(s.ab)).toContain("rate=20000000bit");
    expect(() => parseLinkSpec("rate=fast")).toThrow(/Bad link rate/);
    expect(() => parseLinkSpec("loss=100%")).toThrow(/below 100/);
    expect(() => parseLinkSpec("color=blue")).toThrow(/Unknown/);
  });

  it("splits a path into equal hops that compound to it", () => {
    const wan = parseLinkSpec("wan");
    const hop = splitSpec(wan, 2);
    if (hop.kind !== "emulated") throw new Error("expected emulated");
    expect(specRttMs(hop) * 2).toBe(specRttMs(wan));
    expect(hop.ab).toMatchObject({ rateBps: 100e6, delayMs: 12.5, queueBytes: 625_000 });
    expect(1 - (1 - hop.ab.loss) ** 2).toBeCloseTo(0.001, 12);
    expect(splitSpec(parseLinkSpec("dc"), 2).kind).toBe("veth");
    expect(() => splitSpec(wan, 0)).toThrow(/hop count/);
  });
});
