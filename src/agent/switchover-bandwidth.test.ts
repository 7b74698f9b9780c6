import { describe, expect, it } from "vitest";
import {
  deliveredRate,
  MIN_SHARE_OF_RATE,
  RATE_WINDOW_MS,
  type RelaySample,
  switchoverBandwidth,
  switchoverEstimateFromEnv,
  worthSending,
} from "./switchover-bandwidth.js";

const MiB = 1024 * 1024;

describe("switchoverBandwidth", () => {
  it("leaves QEMU's own estimate while the relay's rate is unknown", () => {
    expect(
      switchoverBandwidth({ deliveredRateBps: null, inFlightBytes: 0, downtimeLimitMs: 300 }),
    ).toBeNull();
    expect(switchoverBandwidth({ deliveredRateBps: 0, inFlightBytes: 0, downtimeLimitMs: 300 })).toBeNull();
  });

  it("is the delivered rate when the relay holds nothing back", () => {
    expect(switchoverBandwidth({ deliveredRateBps: 20 * MiB, inFlightBytes: 0, downtimeLimitMs: 300 })).toBe(
      20 * MiB,
    );
  });

  it("takes the relay's backlog out of what fits in the downtime limit", () => {
    // 20 MiB/s × 0.3 s = 6 MiB fits; 2 MiB of it is the backlog, so QEMU may leave 4 MiB:
    // 4 MiB / 0.3 s.
    const bw = switchoverBandwidth({
      deliveredRateBps: 20 * MiB,
      inFlightBytes: 2 * MiB,
      downtimeLimitMs: 300,
    });
    expect(bw).toBe(Math.floor((20 * MiB * 0.3 - 2 * MiB) / 0.3));
    expect(bw! * 0.3 + 2 * MiB).toBeCloseTo(20 * MiB * 0.3, -1);
  });

  it("never goes below a share of the rate, so a full backlog cannot stop convergence", () => {
    const bw = switchoverBandwidth({
      deliveredRateBps: 20 * MiB,
      inFlightBytes: 8 * MiB,
      downtimeLimitMs: 300,
    });
    expect(bw).toBe(Math.floor(20 * MiB * MIN_SHARE_OF_RATE));
  });
});

describe("deliveredRate", () => {
  const at = (atMs: number, deliveredBytes: number): RelaySample => ({
    atMs,
    deliveredBytes,
    logicalBytes: deliveredBytes,
  });

  it("needs half a second of samples", () => {
    expect(deliveredRate([])).toBeNull();
    expect(deliveredRate([at(0, 0), at(400, 4 * MiB)])).toBeNull();
  });

  it("is bytes per second over the recent window only", () => {
    expect(deliveredRate([at(0, 0), at(1000, 10 * MiB)])).toBe(10 * MiB);
    // An old burst outside the window does not count.
    const samples = [at(0, 0), at(100, 50 * MiB), at(3000, 60 * MiB), at(3000 + RATE_WINDOW_MS, 80 * MiB)];
    expect(deliveredRate(samples)).toBe((20 * MiB * 1000) / RATE_WINDOW_MS);
  });
});

describe("worthSending", () => {
  it("sends the first value and changes beyond 5 %", () => {
    expect(worthSending(null, 1)).toBe(true);
    expect(worthSending(100, 104)).toBe(false);
    expect(worthSending(100, 94)).toBe(true);
  });
});

describe("switchoverEstimateFromEnv", () => {
  it("defaults to the relay's measurement, takes qemu, and refuses anything else by name", () => {
    expect(switchoverEstimateFromEnv({})).toBe("relay");
    expect(switchoverEstimateFromEnv({ NOVACRON_SWITCHOVER_BANDWIDTH: "qemu" })).toBe("qemu");
    expect(() => switchoverEstimateFromEnv({ NOVACRON_SWITCHOVER_BANDWIDTH: "fast" })).toThrow(
      /NOVACRON_SWITCHOVER_BANDWIDTH must be "relay" or "qemu", got "fast"/,
    );
  });
});
