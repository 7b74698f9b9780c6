import { describe, expect, it } from "vitest";
import type { DrainVmState } from "../states/drain.js";
import type { MigrationState } from "../states/migration.js";
import type { VmState } from "../states/vm.js";
import {
  type DrainObservations,
  MAX_MOVE_ATTEMPTS,
  nextAction,
  type ObservedMigration,
  type ObservedVm,
  type PlanDrain,
  type PlanEntry,
  retryDelayMs,
  retryLeft,
} from "./drain-plan.js";

const H = "host-h";
const NOW = Date.parse("2026-12-07T04:00:00.000Z");
const vm = (name: string, state: VmState = "running", hostId: string | null = H): ObservedVm => ({
  id: `id-${name}`,
  name,
  state,
  hostId,
  host: hostId === H ? "h" : hostId,
});
const entry = (name: string, state: DrainVmState = "waiting", over: Partial<PlanEntry> = {}): PlanEntry => ({
  vm: name,
  vmId: `id-${name}`,
  state,
  migrationId: null,
  targetHost: null,
  attempts: 0,
  lastAttemptAt: null,
  ...over,
});
const drain = (vms: PlanEntry[], over: Partial<PlanDrain> = {}): PlanDrain => ({
  hostId: H,
  host: "h",
  concurrency: 1,
  cancelRequested: false,
  vms,
  ...over,
});
const mig = (id: string, vmName: string, state: MigrationState, over: Partial<ObservedMigration> = {}) => ({
  id,
  vmId: `id-${vmName}`,
  state,
  stateReason: `${state} reason`,
  sourceHostId: H,
  targetHost: "b",
  ...over,
});
const obs = (vms: ObservedVm[], migrations: ObservedMigration[] = [], liveness: "alive" | "dead" = "alive") =>
  ({ host: { liveness }, vms, migrations, now: NOW }) satisfies DrainObservations;

describe("drain planner", () => {
  it("tracks a VM that reached the host after the drain began", () => {
    expect(nextAction(drain([entry("a")]), obs([vm("a"), vm("new")]))).toEqual({
      kind: "track",
      vm: { id: "id-new", name: "new" },
    });
  });

  it("marks a VM deleted during the drain gone, waiting or moving", () => {
    expect(nextAction(drain([entry("a")]), obs([]))).toMatchObject({ kind: "settle", vm: "a", to: "gone" });
    expect(
      nextAction(
        drain([entry("a", "moving", { migrationId: "m1" })]),
        obs([], [mig("m1", "a", "transferring")]),
      ),
    ).toMatchObject({ kind: "settle", vm: "a", to: "gone" });
    expect(nextAction(drain([entry("a", "waiting", { vmId: null })]), obs([]))).toMatchObject({
      to: "gone",
    });
  });

  it("records a completed move as moved to the migration's target", () => {
    expect(
      nextAction(
        drain([entry("a", "moving", { migrationId: "m1" })]),
        obs([vm("a", "running", "host-b")], [mig("m1", "a", "completed")]),
      ),
    ).toEqual({ kind: "settle", vm: "a", to: "moved", change: { targetHost: "b", reason: "moved to b" } });
  });

  it("records a failed move with no attempt left, or a cancelled migration, as failed with its code and reason", () => {
    for (const [state, attempts] of [
      ["failed", MAX_MOVE_ATTEMPTS],
      ["cancelled", 1],
    ] as const) {
      expect(
        nextAction(
          drain([entry("a", "moving", { migrationId: "m1", attempts })]),
          obs([vm("a")], [mig("m1", "a", state)]),
        ),
      ).toEqual({
        kind: "settle",
        vm: "a",
        to: "failed",
        change: {
          code: "NOVA_DRAIN_MIGRATION_FAILED",
          reason: `migration m1 to b ${state}: ${state} reason`,
        },
      });
    }
  });

  it("puts a VM whose migration failed back to waiting while attempts are left, naming the failed target", () => {
    const failed = mig("m1", "a", "failed");
    expect(
      nextAction(drain([entry("a", "moving", { migrationId: "m1", attempts: 1 })]), obs([vm("a")], [failed])),
    ).toEqual({
      kind: "settle",
      vm: "a",
      to: "waiting",
      change: {
        code: "NOVA_DRAIN_MIGRATION_FAILED",
        targetHost: "b",
        reason:
          "move 1 of 3 failed (migration m1 to b: failed reason); retried in 5 s, on another host if one fits",
      },
    });
    // Not when the drain was cancelled or the host went dead meanwhile.
    const e = entry("a", "moving", { migrationId: "m1", attempts: 1 });
    expect(nextAction(drain([e], { cancelRequested: true }), obs([vm("a")], [failed]))).toMatchObject({
      to: "failed",
    });
    expect(nextAction(drain([e]), obs([vm("a")], [failed], "dead"))).toMatchObject({ to: "failed" });
  });

  it("waits out a failed move's back-off, then retries it away from the host it failed on", () => {
    const failedAt = (msAgo: number) => new Date(NOW - msAgo).toISOString();
    const retry = (attempts: number, msAgo: number) =>
      nextAction(
        drain([
          entry("a", "waiting", {
            attempts,
            lastAttemptAt: failedAt(msAgo),
            targetHost: "b",
            migrationId: "m1",
          }),
        ]),
        obs([vm("a")]),
      );
    expect(retry(1, 1000)).toEqual({ kind: "wait", reason: "0 move(s) under way, a retried in 4 s" });
    expect(retry(1, 5000)).toEqual({ kind: "start-move", vm: "a", vmId: "id-a", avoidHost: "b" });
    // The back-off doubles: 10 s after the second failure.
    expect(retry(2, 6000)).toMatchObject({ kind: "wait" });
    expect(retry(2, 10_000)).toMatchObject({ kind: "start-move", avoidHost: "b" });
    expect(retryDelayMs(1)).toBe(5000);
    expect(retryDelayMs(2)).toBe(10_000);
    expect(retryLeft(2)).toBe(true);
    expect(retryLeft(MAX_MOVE_ATTEMPTS)).toBe(false);
  });

  it("moves another VM while one waits out its back-off", () => {
    const backing = entry("a", "waiting", {
      attempts: 1,
      lastAttemptAt: new Date(NOW - 1000).toISOString(),
      targetHost: "b",
    });
    expect(nextAction(drain([backing, entry("c")]), obs([vm("a"), vm("c")]))).toEqual({
      kind: "start-move",
      vm: "c",
      vmId: "id-c",
    });
  });

  it("fails a move whose migration is no longer recorded", () => {
    expect(
      nextAction(drain([entry("a", "moving", { migrationId: "m1" })]), obs([vm("a", "migrating")])),
    ).toMatchObject({ to: "failed", change: { code: "NOVA_DRAIN_MIGRATION_FAILED" } });
  });

  it("waits for a move under way", () => {
    expect(
      nextAction(
        drain([entry("a", "moving", { migrationId: "m1" })]),
        obs([vm("a", "migrating")], [mig("m1", "a", "transferring")]),
      ),
    ).toEqual({ kind: "wait", reason: "1 move(s) under way" });
  });

  it("adopts a migration off the host that the entry does not name yet (a restart between create and record)", () => {
    expect(nextAction(drain([entry("a")]), obs([vm("a", "migrating")], [mig("m9", "a", "queued")]))).toEqual({
      kind: "settle",
      vm: "a",
      to: "moving",
      change: { migrationId: "m9", targetHost: "b", reason: "migrating to b" },
    });
  });

  it("does not adopt a finished migration or one from another host", () => {
    const d = drain([entry("a")]);
    expect(nextAction(d, obs([vm("a")], [mig("m0", "a", "failed")]))).toMatchObject({ kind: "start-move" });
    expect(
      nextAction(d, obs([vm("a", "migrating")], [mig("m1", "a", "queued", { sourceHostId: "host-x" })])),
    ).toMatchObject({ kind: "wait" });
  });

  it("records a waiting VM that is on another host already as moved", () => {
    expect(nextAction(drain([entry("a")]), obs([vm("a", "running", "host-c")]))).toMatchObject({
      kind: "settle",
      vm: "a",
      to: "moved",
      change: { targetHost: "host-c" },
    });
  });

  it("starts the first running VM's move", () => {
    expect(nextAction(drain([entry("a"), entry("b")]), obs([vm("a"), vm("b")]))).toEqual({
      kind: "start-move",
      vm: "a",
      vmId: "id-a",
    });
  });

  it("keeps at most `concurrency` moves under way", () => {
    const d = (concurrency: number) =>
      drain([entry("a", "moving", { migrationId: "m1" }), entry("b"), entry("c")], { concurrency });
    const o = obs([vm("a", "migrating"), vm("b"), vm("c")], [mig("m1", "a", "transferring")]);
    expect(nextAction(d(1), o)).toEqual({
      kind: "wait",
      reason: "1 move(s) under way, 2 VM(s) waiting for a slot",
    });
    expect(nextAction(d(2), o)).toEqual({ kind: "start-move", vm: "b", vmId: "id-b" });
  });

  it("on cancel starts nothing new and waits for the moves under way", () => {
    const d = drain([entry("a", "moving", { migrationId: "m1" }), entry("b")], { cancelRequested: true });
    expect(nextAction(d, obs([vm("a", "migrating"), vm("b")], [mig("m1", "a", "transferring")]))).toEqual({
      kind: "wait",
      reason: "cancel requested; waiting for 1 move(s) under way to end",
    });
  });

  it("on cancel calls off the waiting VMs once nothing is under way, then ends cancelled", () => {
    const d = drain([entry("a", "moved"), entry("b")], { cancelRequested: true });
    expect(nextAction(d, obs([vm("a", "running", "host-b"), vm("b")]))).toMatchObject({
      kind: "settle",
      vm: "b",
      to: "cancelled",
    });
    expect(
      nextAction(
        drain([entry("a", "moved"), entry("b", "cancelled")], { cancelRequested: true }),
        obs([vm("b")]),
      ),
    ).toEqual({
      kind: "finish",
      to: "cancelled",
      reason: "cancelled: 1 moved, 1 not started (cancelled); h stays cordoned",
    });
  });

  it("a cancel that came after every move ended changes nothing in the outcome", () => {
    expect(nextAction(drain([entry("a", "moved")], { cancelRequested: true }), obs([]))).toMatchObject({
      kind: "finish",
      to: "drained",
    });
  });

  it("fails the waiting VMs of a host that went dead, but lets moves under way end", () => {
    const d = drain([entry("a", "moving", { migrationId: "m1" }), entry("b")]);
    expect(
      nextAction(d, obs([vm("a", "migrating"), vm("b")], [mig("m1", "a", "transferring")], "dead")),
    ).toMatchObject({
      kind: "settle",
      vm: "b",
      to: "failed",
      change: { code: "NOVA_HOST_DOWN" },
    });
  });

  it("waits for VMs in a transitional state", () => {
    for (const state of ["starting", "stopping", "scheduled", "pending", "migrating"] as const) {
      expect(nextAction(drain([entry("a")]), obs([vm("a", state)]))).toEqual({
        kind: "wait",
        reason: `waiting for a (${state}) to settle`,
      });
    }
  });

  it("moves running VMs before reporting stopped ones", () => {
    expect(nextAction(drain([entry("s"), entry("a")]), obs([vm("s", "stopped"), vm("a")]))).toMatchObject({
      kind: "start-move",
      vm: "a",
    });
  });

  it("leaves stopped and failed VMs on the host once nothing else is left", () => {
    for (const state of ["stopped", "failed"] as const) {
      const action = nextAction(drain([entry("a", "moved"), entry("s")]), obs([vm("s", state)]));
      expect(action).toMatchObject({ kind: "settle", vm: "s", to: "left" });
      expect(action.kind === "settle" && action.change.reason).toMatch(
        new RegExp(`^not running \\(${state}\\): left on h`),
      );
    }
  });

  it("does not leave a stopped VM while a move is under way (it may be started and then moved)", () => {
    expect(
      nextAction(
        drain([entry("a", "moving", { migrationId: "m1" }), entry("s")]),
        obs([vm("a", "migrating"), vm("s", "stopped")], [mig("m1", "a", "transferring")]),
      ),
    ).toMatchObject({ kind: "wait" });
  });

  it("ends drained when every VM moved or was left stopped", () => {
    expect(
      nextAction(
        drain([entry("a", "moved"), entry("s", "left"), entry("g", "gone")]),
        obs([vm("s", "stopped")]),
      ),
    ).toEqual({
      kind: "finish",
      to: "drained",
      reason: "1 moved, 1 not running, left on h, 1 deleted meanwhile; h stays cordoned",
    });
  });

  it("ends incomplete when a VM could not move", () => {
    expect(nextAction(drain([entry("a", "moved"), entry("b", "failed")]), obs([vm("b")]))).toEqual({
      kind: "finish",
      to: "incomplete",
      reason: "1 moved, 1 could not move; h stays cordoned",
    });
  });

  it("ends drained at once for a host with no VMs", () => {
    expect(nextAction(drain([]), obs([]))).toEqual({
      kind: "finish",
      to: "drained",
      reason: "0 moved; h stays cordoned",
    });
  });
});
