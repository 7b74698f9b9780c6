import { describe, expect, it } from "vitest";
import type { MigrationProgress } from "../../api/types/migrations.js";
import { byteCounts } from "./bytes-chart.js";
import { migrationPercent } from "./progress.js";

const base: MigrationProgress = {
  phase: "memory",
  diskBytesDone: 0,
  diskBytesTotal: 0,
  memoryBytesSent: 0,
  memoryBytesRemaining: 0,
  memoryBytesTotal: 0,
  pass: 1,
  pagesPerSecond: 0,
  dirtyBytesPerSecond: 0,
  throughputMbps: 0,
  expectedDowntimeMs: null,
  etaSeconds: null,
  autoConvergeThrottlePct: null,
};

describe("a migration's progress in the console", () => {
  it("counts disk copied and memory no longer dirty, and reaches 100 only when completed", () => {
    const p = {
      ...base,
      diskBytesDone: 50,
      diskBytesTotal: 100,
      memoryBytesTotal: 100,
      memoryBytesRemaining: 100,
    };
    expect(migrationPercent({ state: "transferring" }, p)).toBe(25);
    expect(
      migrationPercent({ state: "transferring" }, { ...p, diskBytesDone: 100, memoryBytesRemaining: 0 }),
    ).toBe(99);
    expect(migrationPercent({ state: "completed" }, p)).toBe(100);
    expect(migrationPercent({ state: "queued" }, undefined)).toBe(0);
  });

  it("charts DWCP's wire bytes apart from the logical bytes, and QEMU's transport as one", () => {
    const dwcp = {
      ...base,
      transport: {
        chosen: "dwcp",
        mode: "wan",
        reason: "",
        wireBytes: 30,
        logicalBytes: 100,
        diskWireBytes: 5,
        diskLogicalBytes: 50,
      },
    };
    expect(byteCounts(dwcp)).toEqual({ wire: 35, logical: 150, measuredWire: true });
    expect(byteCounts({ ...base, memoryBytesSent: 70, diskBytesDone: 30 })).toEqual({
      wire: 100,
      logical: 100,
      measuredWire: false,
    });
  });
});
