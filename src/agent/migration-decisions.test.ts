import { describe, expect, it } from "vitest";
import type { MigrationProgress } from "../compute/qemu/migration.js";
import { isNovaError } from "../lib/errors.js";
import type { OutgoingStats } from "./dwcp-transport.js";
import {
  cancelPlan,
  incomingListeners,
  incomingLoaded,
  incomingStreamReady,
  migrationNames,
  type OutgoingObservation,
  outgoingView,
  shouldStartPostcopy,
  switchoverPlan,
} from "./migration-decisions.js";

const MIG = "0a1b2c3d-4e5f-6789-abcd-ef0123456789";

function progress(status: string, extra: Partial<MigrationProgress> = {}): MigrationProgress {
  return {
    status,
    totalBytes: 100,
    transferredBytes: 40,
    remainingBytes: 60,
    pass: 1,
    pagesPerSecond: 10,
    dirtyPagesRate: 0,
    dirtyBytesPerSecond: 0,
    mbps: 8,
    pageSizeBytes: 4096,
    ...extra,
  };
}

function observation(o: Partial<OutgoingObservation> = {}): OutgoingObservation {
  return {
    migrationId: MIG,
    vmStatus: "running",
    mirror: undefined,
    memory: progress("active"),
    startedMigrationId: MIG,
    times: undefined,
    decision: undefined,
    relay: undefined,
    ...o,
  };
}

describe("migrationNames", () => {
  it("derives the job and export names from the first 12 hex digits of the id", () => {
    expect(migrationNames(MIG)).toEqual({ jobId: "mig-0a1b2c3d4e5f", exportName: "mig-0a1b2c3d4e5f" });
  });
});

describe("outgoingView", () => {
  it("reports QEMU's migration status only for the migration this agent started", () => {
    expect(outgoingView(observation()).memory?.status).toBe("active");
    expect(outgoingView(observation({ startedMigrationId: "other" })).memory).toBeNull();
    expect(outgoingView(observation({ startedMigrationId: undefined })).memory).toBeNull();
  });

  it("reports no memory transfer while QEMU says none", () => {
    expect(outgoingView(observation({ memory: progress("none") })).memory).toBeNull();
  });

  it("names the mirror job and leaves transport out when nothing was decided", () => {
    const view = outgoingView(observation({ mirror: { status: "ready", ready: true, offset: 5, len: 5 } }));
    expect(view.mirror).toEqual({
      jobId: "mig-0a1b2c3d4e5f",
      status: "ready",
      ready: true,
      offset: 5,
      len: 5,
    });
    expect(view).not.toHaveProperty("transport");
    expect(outgoingView(observation()).mirror).toBeNull();
  });

  it("adds the downtime breakdown once all switch-over events and QEMU's downtime are known", () => {
    const times = { preSwitchoverAt: 1000, deviceAt: 1100, completedAt: 1150 };
    const view = outgoingView(observation({ memory: progress("completed", { downtimeMs: 400 }), times }));
    expect(view.memory?.downtimeBreakdown).toEqual({ stopMs: 250, mirrorFinishMs: 100, finalMs: 50 });
    // The vCPUs stopped QEMU's downtime before `completed`.
    expect(view.memory?.stoppedAt).toBe(750);
    const unknown = outgoingView(observation({ memory: progress("completed"), times })).memory;
    expect(unknown).not.toHaveProperty("downtimeBreakdown");
    expect(unknown).not.toHaveProperty("stoppedAt");
  });

  it("reports the transport decision, with the relay's counters over DWCP", () => {
    const decision = {
      chosen: "qemu" as const,
      mode: null,
      reason: "requested",
      rttMs: null,
      probedMbps: null,
    };
    expect(outgoingView(observation({ decision })).transport).toEqual({
      chosen: "qemu",
      mode: null,
      reason: "requested",
    });
    const pages = { total: 4, zero: 1, ref: 1, delta: 1, full: 1 };
    const relay: OutgoingStats = {
      logicalBytes: 10,
      wireBytes: 5,
      ratio: 2,
      deliveredBytes: 9,
      returnBytes: 0,
      qemuZeroPages: 0,
      pages,
      parserMode: "parse",
      parserReason: null,
      streams: 3,
      mode: "internet",
      disk: { logicalBytes: 1, wireBytes: 1, pages },
      startedFrom: null,
    };
    const view = outgoingView(
      observation({ decision: { ...decision, chosen: "dwcp", mode: "internet" }, relay }),
    );
    expect(view.transport).toEqual({
      chosen: "dwcp",
      mode: "internet",
      reason: "requested",
      relay: {
        logicalBytes: 10,
        wireBytes: 5,
        ratio: 2,
        streams: 3,
        mode: "internet",
        pages,
        disk: { logicalBytes: 1, wireBytes: 1, pages },
      },
    });
    // A session started from the path's remembered figures says so.
    const startedFrom = { streams: 12, capacityBps: 11e6, mode: "internet" as const, level: 3, at: 1 };
    const remembered = outgoingView(
      observation({
        decision: { ...decision, chosen: "dwcp", mode: "internet" },
        relay: { ...relay, startedFrom },
      }),
    );
    expect(remembered.transport?.relay?.startedFrom).toEqual(startedFrom);
  });
});

describe("switchoverPlan", () => {
  it("finishes the mirror and continues at pre-switchover", () => {
    expect(switchoverPlan("pre-switchover", true)).toEqual({ finishMirror: true, continue: true });
    expect(switchoverPlan("pre-switchover", false)).toEqual({ finishMirror: false, continue: true });
  });

  it("does nothing once QEMU is past pre-switchover", () => {
    for (const s of ["device", "completed"])
      expect(switchoverPlan(s, true)).toEqual({ finishMirror: false, continue: false });
  });

  it("refuses before pre-switchover, after a failure, and without a transfer", () => {
    for (const s of ["active", "setup", "failed", "cancelled", "postcopy-active", undefined]) {
      let err: unknown;
      try {
        switchoverPlan(s, true);
      } catch (e) {
        err = e;
      }
      expect(isNovaError(err, "NOVA_ILLEGAL_STATE"), String(s)).toBe(true);
    }
    expect(() => switchoverPlan(undefined, false)).toThrow(
      "cannot switch over: the migration is not started",
    );
  });
});

describe("cancelPlan", () => {
  it("refuses to resume a source whose completed transfer the target may still run", () => {
    expect(cancelPlan("completed", true, false)).toEqual({ kind: "refuse" });
  });

  it("takes the VM back after completion once the target is gone", () => {
    expect(cancelPlan("completed", true, true)).toEqual({
      kind: "resume-after-switchover",
      cancelMirror: true,
    });
    expect(cancelPlan("completed", false, true)).toEqual({
      kind: "resume-after-switchover",
      cancelMirror: false,
    });
  });

  it("cancels a memory transfer that is still going, but not one that already ended or never began", () => {
    for (const s of ["active", "setup", "pre-switchover", "device", "postcopy-active"])
      expect(cancelPlan(s, false, false)).toEqual({
        kind: "abandon",
        cancelMemory: true,
        cancelMirror: false,
      });
    for (const s of ["failed", "cancelled", undefined])
      expect(cancelPlan(s, true, false)).toEqual({
        kind: "abandon",
        cancelMemory: false,
        cancelMirror: true,
      });
  });
});

describe("incoming migration", () => {
  it("waits for the stream to complete or reach post-copy", () => {
    expect(incomingStreamReady("completed")).toBe(true);
    expect(incomingStreamReady("postcopy-active")).toBe(true);
    for (const s of ["none", "setup", "active", "device", "failed"])
      expect(incomingStreamReady(s)).toBe(false);
  });

  it("counts as loaded only once QEMU left inmigrate", () => {
    expect(incomingLoaded("completed", "paused")).toBe(true);
    expect(incomingLoaded("postcopy-active", "paused")).toBe(true);
    expect(incomingLoaded("postcopy-active", "inmigrate")).toBe(false);
    expect(incomingLoaded("completed", "inmigrate")).toBe(false);
    expect(incomingLoaded("active", "paused")).toBe(false);
  });
});

describe("incomingListeners", () => {
  it("inside a cluster puts QEMU behind the relay only when DWCP was requested and offered", () => {
    for (const transport of [undefined, "auto", "qemu"] as const)
      expect(incomingListeners({ transport, crossCluster: false, dwcp: true })).toEqual({
        behindRelay: false,
      });
    expect(incomingListeners({ transport: "dwcp", crossCluster: false, dwcp: true })).toEqual({
      behindRelay: true,
    });
    expect(incomingListeners({ transport: "dwcp", crossCluster: false, dwcp: false })).toEqual({
      behindRelay: false,
    });
  });

  it("from another cluster always puts QEMU behind the relay (auto means DWCP)", () => {
    for (const transport of [undefined, "auto", "dwcp"] as const)
      expect(incomingListeners({ transport, crossCluster: true, dwcp: true })).toEqual({ behindRelay: true });
  });

  it("from another cluster refuses QEMU's transport and an agent without DWCP", () => {
    const refusal = (o: Parameters<typeof incomingListeners>[0]) => {
      try {
        incomingListeners(o);
      } catch (err) {
        expect(isNovaError(err, "NOVA_UNPROCESSABLE")).toBe(true);
        return (err as Error).message;
      }
      throw new Error("not refused");
    };
    expect(refusal({ transport: "qemu", crossCluster: true, dwcp: true })).toMatch(
      /^QEMU's own transport stays inside a cluster/,
    );
    expect(refusal({ transport: "auto", crossCluster: true, dwcp: false })).toMatch(
      /this agent does not offer it/,
    );
  });
});

describe("shouldStartPostcopy", () => {
  it("switches only a running pre-copy", () => {
    expect(shouldStartPostcopy("active")).toBe(true);
    for (const s of ["postcopy-active", "completed", "pre-switchover", undefined])
      expect(shouldStartPostcopy(s)).toBe(false);
  });
});
