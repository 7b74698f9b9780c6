import { describe, expect, it } from "vitest";
import type { MigrationRecord } from "../cluster/store/migrations.js";
import { migrationFigures } from "./migration-metrics.js";

const base = {
  state: "completed",
  createdAt: "2026-01-01T00:00:00.000Z",
  startedAt: "2026-01-01T00:00:01.000Z",
  finishedAt: "2026-01-01T00:00:31.000Z",
  progress: {},
  result: { downtimeMs: 120, memoryBytes: 1000, diskBytes: 500, totalTimeMs: 9000 },
} as unknown as MigrationRecord;

describe("migration figures", () => {
  it("takes the whole run's duration and, over QEMU's transport, the bytes it sent as both wire and logical", () => {
    expect(migrationFigures(base)).toEqual({
      durationS: 30,
      downtimeS: 0.12,
      wireBytes: 1500,
      logicalBytes: 1500,
    });
  });

  it("takes DWCP's wire and relayed bytes of memory and disk", () => {
    const m = {
      ...base,
      progress: {
        transport: {
          chosen: "dwcp",
          mode: "internet",
          reason: "",
          wireBytes: 100,
          logicalBytes: 1000,
          diskWireBytes: 10,
          diskLogicalBytes: 500,
        },
      },
    } as unknown as MigrationRecord;
    expect(migrationFigures(m)).toMatchObject({ wireBytes: 110, logicalBytes: 1500 });
  });

  it("records no downtime for a migration that did not complete", () => {
    expect(migrationFigures({ ...base, state: "failed" } as MigrationRecord).downtimeS).toBeNull();
  });
});
