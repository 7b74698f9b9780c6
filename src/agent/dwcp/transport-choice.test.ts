/**
 * The transport choice, case by case: what each request gets when DWCP is not offered,
 * when the destination's listener is unreachable, and on each kind of measured path.
 */
import { describe, expect, it } from "vitest";
import { isNovaError } from "../../lib/errors.js";
import {
  chooseBeforeDial,
  chooseForPath,
  chooseWhenUnreachable,
  type PathObservation,
  type RequestedTransport,
} from "./transport-choice.js";

const MBps = 1e6 / 8; // bytes/s per Mbit/s

describe("chooseBeforeDial", () => {
  const cases: [RequestedTransport, boolean, boolean, string][] = [
    ["auto", true, true, "dial"],
    ["auto", false, true, "qemu: auto: DWCP is not available between these hosts"],
    ["auto", true, false, "qemu: auto: DWCP is not available between these hosts"],
    ["auto", false, false, "qemu: auto: DWCP is not available between these hosts"],
    ["qemu", true, true, "qemu: requested"],
    ["qemu", false, true, "qemu: requested"],
    ["qemu", true, false, "qemu: requested"],
    ["qemu", false, false, "qemu: requested"],
    ["dwcp", true, true, "dial"],
    ["dwcp", false, true, "fail: DWCP was requested but this agent does not offer it"],
    ["dwcp", false, false, "fail: DWCP was requested but this agent does not offer it"],
    ["dwcp", true, false, "fail: DWCP was requested but the destination agent does not offer it"],
  ];
  it.each(cases)("requested %s, local DWCP %s, peer DWCP %s: %s", (requested, localDwcp, peerDwcp, want) => {
    const c = chooseBeforeDial({ requested, localDwcp, peerDwcp });
    switch (c.action) {
      case "dial":
        expect(want).toBe("dial");
        break;
      case "fail":
        expect(isNovaError(c.error, "NOVA_UNPROCESSABLE")).toBe(true);
        expect(`fail: ${c.error.message}`).toBe(want);
        break;
      case "use":
        expect(c.decision).toEqual({
          chosen: "qemu",
          mode: null,
          reason: want.slice("qemu: ".length),
          rttMs: null,
          probedMbps: null,
        });
    }
  });
});

describe("chooseBeforeDial across clusters", () => {
  it("dials for DWCP whether auto or dwcp was asked: nothing else reaches the other cluster", () => {
    for (const requested of ["auto", "dwcp"] as const)
      expect(chooseBeforeDial({ requested, localDwcp: true, peerDwcp: true, crossCluster: true })).toEqual({
        action: "dial",
        requested: "dwcp",
      });
  });

  it("fails for QEMU's transport, and without DWCP on either side", () => {
    const failed = (o: Parameters<typeof chooseBeforeDial>[0]) => {
      const c = chooseBeforeDial(o);
      if (c.action !== "fail") throw new Error(`expected a failure, got ${c.action}`);
      expect(isNovaError(c.error, "NOVA_UNPROCESSABLE")).toBe(true);
      return c.error.message;
    };
    expect(failed({ requested: "qemu", localDwcp: true, peerDwcp: true, crossCluster: true })).toBe(
      "QEMU's own transport stays inside a cluster: a migration to another cluster must use DWCP",
    );
    expect(failed({ requested: "auto", localDwcp: false, peerDwcp: true, crossCluster: true })).toMatch(
      /needs DWCP, and this agent does not offer it/,
    );
    expect(failed({ requested: "dwcp", localDwcp: true, peerDwcp: false, crossCluster: true })).toMatch(
      /needs DWCP, and the destination agent does not offer it/,
    );
  });

  it("inside a cluster passes the request on unchanged", () => {
    expect(
      chooseBeforeDial({ requested: "auto", localDwcp: true, peerDwcp: true, crossCluster: false }),
    ).toEqual({
      action: "dial",
      requested: "auto",
    });
  });
});

describe("chooseWhenUnreachable", () => {
  it("auto falls back to QEMU's transport and says why", () => {
    expect(chooseWhenUnreachable({ requested: "auto", error: "connect ECONNREFUSED" })).toEqual({
      chosen: "qemu",
      mode: null,
      reason: "auto: the destination's DWCP listener is unreachable (connect ECONNREFUSED)",
      rttMs: null,
      probedMbps: null,
    });
  });

  it("a requested DWCP cannot be honoured", () => {
    expect(chooseWhenUnreachable({ requested: "dwcp", error: "connect ECONNREFUSED" })).toBeNull();
  });
});

describe("chooseForPath", () => {
  const path = (o: Partial<PathObservation>): PathObservation => ({
    requested: "auto",
    kernelRttMs: null,
    sessionRttMs: null,
    probedBps: 0,
    ...o,
  });

  it("auto on a datacenter path (fast probe, RTT < 10 ms) picks QEMU's transport", () => {
    expect(chooseForPath(path({ sessionRttMs: 5, probedBps: 2000 * MBps }))).toEqual({
      chosen: "qemu",
      mode: "datacenter",
      reason:
        "auto: datacenter-class path (RTT 5.0 ms, probe 2000 Mbit/s); QEMU's own transport is faster there",
      rttMs: 5,
      probedMbps: 2000,
    });
  });

  it("auto with no probe counts the bandwidth as unlimited", () => {
    const d = chooseForPath(path({ kernelRttMs: 3 }));
    expect(d).toMatchObject({ chosen: "qemu", mode: "datacenter", probedMbps: null });
    expect(d.reason).toBe(
      "auto: datacenter-class path (RTT 3.0 ms (kernel)); QEMU's own transport is faster there",
    );
  });

  it("auto on a sub-millisecond RTT is a LAN whatever the probe says", () => {
    expect(chooseForPath(path({ kernelRttMs: 0.123, probedBps: 400 * MBps }))).toEqual({
      chosen: "qemu",
      mode: "datacenter",
      reason:
        "auto: datacenter-class path (RTT 0.12 ms (kernel), probe 400 Mbit/s, RTT under 1 ms); QEMU's own transport is faster there",
      rttMs: 0.123,
      probedMbps: 400,
    });
  });

  it("auto on a hybrid path picks DWCP", () => {
    expect(chooseForPath(path({ kernelRttMs: 20, probedBps: 1600 * MBps }))).toEqual({
      chosen: "dwcp",
      mode: "hybrid",
      reason: "auto: hybrid path (RTT 20.0 ms (kernel), probe 1600 Mbit/s)",
      rttMs: 20,
      probedMbps: 1600,
    });
  });

  it("auto on an internet path (slow probe) picks DWCP even at a short RTT", () => {
    expect(chooseForPath(path({ sessionRttMs: 4, probedBps: 80 * MBps }))).toEqual({
      chosen: "dwcp",
      mode: "internet",
      reason: "auto: internet path (RTT 4.0 ms, probe 80 Mbit/s)",
      rttMs: 4,
      probedMbps: 80,
    });
  });

  it("auto on a long RTT picks DWCP without a probe", () => {
    expect(chooseForPath(path({ sessionRttMs: 120 }))).toMatchObject({
      chosen: "dwcp",
      mode: "internet",
      reason: "auto: internet path (RTT 120.0 ms)",
    });
  });

  it("auto without any RTT sample picks DWCP on an unknown path", () => {
    expect(chooseForPath(path({}))).toEqual({
      chosen: "dwcp",
      mode: null,
      reason: "auto: unknown path (RTT ? ms)",
      rttMs: null,
      probedMbps: null,
    });
  });

  it("prefers the kernel's RTT over the session's", () => {
    const d = chooseForPath(path({ kernelRttMs: 30, sessionRttMs: 0.2, probedBps: 50 * MBps }));
    expect(d).toMatchObject({ chosen: "dwcp", mode: "internet", rttMs: 30 });
    expect(d.reason).toBe("auto: internet path (RTT 30.0 ms (kernel), probe 50 Mbit/s)");
  });

  it("a requested DWCP is kept on a datacenter path and on a LAN", () => {
    expect(chooseForPath(path({ requested: "dwcp", kernelRttMs: 0.05 }))).toEqual({
      chosen: "dwcp",
      mode: "datacenter",
      reason: "requested (RTT 0.05 ms (kernel), mode datacenter)",
      rttMs: 0.05,
      probedMbps: null,
    });
    expect(
      chooseForPath(path({ requested: "dwcp", sessionRttMs: 0.4, probedBps: 100 * MBps })),
    ).toMatchObject({
      chosen: "dwcp",
      mode: "internet",
      reason: "requested (RTT 0.40 ms, probe 100 Mbit/s, mode internet)",
    });
  });

  it("a requested DWCP without any RTT sample reports an unknown mode", () => {
    expect(chooseForPath(path({ requested: "dwcp" })).reason).toBe("requested (RTT ? ms, mode unknown)");
  });

  it("a probe that rounds to 0 Mbit/s still counts for the mode but is not printed", () => {
    const d = chooseForPath(path({ sessionRttMs: 20, probedBps: 10 }));
    expect(d).toMatchObject({ chosen: "dwcp", mode: "internet", probedMbps: 0 });
    expect(d.reason).toBe("auto: internet path (RTT 20.0 ms)");
  });
});
