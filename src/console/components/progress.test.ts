import { describe, expect, it } from "vitest";
import type { MigrationProgress, MigrationSample } from "../../api/types/migrations.js";
import { byteCounts, chartPoints } from "./bytes-chart.js";
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

  it("draws the stored history first, then only the live readings taken after it", () => {
    const stored = (at: string, sent: number, wire: number | null): MigrationSample => ({
      at,
      phase: "memory",
      pass: 1,
      memoryBytesSent: sent,
      memoryBytesRemaining: 0,
      diskBytesDone: 10,
      dirtyBytesPerSecond: 0,
      throughputMbps: 0,
      memoryWireBytes: wire,
      memoryLogicalBytes: wire === null ? null : sent,
      diskWireBytes: wire === null ? null : 1,
      diskLogicalBytes: wire === null ? null : 10,
    });
    const t = (s: number) => Date.parse("2026-12-01T10:00:00Z") + s * 1000;
    const history = [stored("2026-12-01T10:00:00Z", 100, 20), stored("2026-12-01T10:00:01Z", 200, 40)];
    const live = [
      { at: t(0.5), progress: { ...base, memoryBytesSent: 150 } },
      {
        at: t(1.2),
        progress: {
          ...base,
          transport: { chosen: "dwcp", mode: "wan", reason: "", wireBytes: 50, logicalBytes: 260 },
        },
      },
    ];
    expect(chartPoints(history, live)).toEqual([
      { at: t(0), wire: 21, logical: 110, measuredWire: true },
      { at: t(1), wire: 41, logical: 210, measuredWire: true },
      { at: t(1.2), wire: 50, logical: 260, measuredWire: true },
    ]);
    expect(chartPoints([stored("2026-12-01T10:00:00Z", 100, null)], [])).toEqual([
      { at: t(0), wire: 110, logical: 110, measuredWire: false },
    ]);
    expect(chartPoints([], live).map((p) => p.at)).toEqual([t(0.5), t(1.2)]);
  });
});
