import { describe, expect, it } from "vitest";
import { downtimeBreakdown, noteMigrationEvent, type SwitchoverTimes } from "./downtime-breakdown.js";

const ev = (status: string, seconds: number, microseconds: number) => ({
  event: "MIGRATION",
  data: { status },
  timestamp: { seconds, microseconds },
});

describe("downtime breakdown", () => {
  it("splits QEMU's downtime at the pre-switchover, device and completed events", () => {
    const t: SwitchoverTimes = {};
    noteMigrationEvent(t, ev("active", 100, 0));
    noteMigrationEvent(t, ev("pre-switchover", 114, 411_373));
    noteMigrationEvent(t, { event: "STOP", timestamp: { seconds: 114, microseconds: 0 } });
    noteMigrationEvent(t, ev("device", 114, 734_779));
    noteMigrationEvent(t, ev("completed", 114, 766_972));
    // QEMU reported 886 ms: 323 ms finishing the mirror, 32 ms final state, the rest stopping.
    expect(downtimeBreakdown(t, 886)).toEqual({ stopMs: 531, mirrorFinishMs: 323, finalMs: 32 });
  });

  it("has none without every event or without QEMU's figure (post-copy, no pause)", () => {
    const t: SwitchoverTimes = {};
    noteMigrationEvent(t, ev("pre-switchover", 1, 0));
    noteMigrationEvent(t, ev("completed", 2, 0));
    expect(downtimeBreakdown(t, 500)).toBeUndefined();
    noteMigrationEvent(t, ev("device", 1, 500_000));
    expect(downtimeBreakdown(t, undefined)).toBeUndefined();
    expect(downtimeBreakdown(t, 1200)).toEqual({ stopMs: 200, mirrorFinishMs: 500, finalMs: 500 });
  });

  it("never reports a negative stop time when the clocks disagree slightly", () => {
    const t: SwitchoverTimes = { preSwitchoverAt: 0, deviceAt: 100, completedAt: 150 };
    expect(downtimeBreakdown(t, 149)).toEqual({ stopMs: 0, mirrorFinishMs: 100, finalMs: 50 });
  });
});
