import { describe, expect, it } from "vitest";
import { classify, ModeDetector } from "./mode.js";

describe("network mode detection", () => {
  it("classifies by the issue's thresholds", () => {
    expect(classify({ rttMs: 0.3, bandwidthBps: 10e9 })).toBe("datacenter");
    expect(classify({ rttMs: 5, bandwidthBps: 500e6 })).toBe("internet");
    expect(classify({ rttMs: 60, bandwidthBps: 10e9 })).toBe("internet");
    expect(classify({ rttMs: 20, bandwidthBps: 2e9 })).toBe("hybrid");
    expect(classify({ rttMs: 9, bandwidthBps: 1e9 })).toBe("datacenter");
  });

  it("switches only after consecutive clear samples and does not flap at a threshold", () => {
    const d = new ModeDetector({ initial: "datacenter" });
    // RTT wobbling around 10 ms: within the widened band, so datacenter holds.
    for (let i = 0; i < 20; i++)
      expect(d.observe({ rttMs: i % 2 ? 9.5 : 10.5, bandwidthBps: 5e9 })).toBe("datacenter");
    expect(d.switches).toBe(0);
    // Clearly internet: needs three in a row.
    expect(d.observe({ rttMs: 80, bandwidthBps: 5e9 })).toBe("datacenter");
    expect(d.observe({ rttMs: 80, bandwidthBps: 5e9 })).toBe("datacenter");
    expect(d.observe({ rttMs: 80, bandwidthBps: 5e9 })).toBe("internet");
    expect(d.profile.maxStreams).toBeGreaterThan(4);
    // One good sample does not bring it back.
    expect(d.observe({ rttMs: 1, bandwidthBps: 5e9 })).toBe("internet");
    expect(d.observe({ rttMs: 80, bandwidthBps: 5e9 })).toBe("internet");
  });
});
