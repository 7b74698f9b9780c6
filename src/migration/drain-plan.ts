/**
 * The pure planner of a host's maintenance drain (states/drain.ts): given the drain record
 * and what the store shows now (the host, its VMs, their migrations), the one next action.
 * drain-executor.ts performs it and asks again until the answer is `wait` or the drain
 * ends. No I/O here: every case is unit-tested (drain-plan.test.ts).
 *
 * The rules, in order:
 *  1. A VM on the host that the drain does not know yet (it arrived meanwhile) is tracked.
 *  2. Entries catch up with the world: a deleted VM is `gone`; a move whose migration ended
 *     is `moved`, or — its migration failed — `waiting` again to be retried while attempts
 *     are left (MAX_MOVE_ATTEMPTS in all, the host alive, no cancel), else `failed` (with
 *     NOVA_DRAIN_MIGRATION_FAILED and the migration's reason; a cancelled migration is not
 *     retried);
 *     a waiting VM that some migration is moving off the host is adopted (`moving`) — this
 *     is also how a move started just before a server restart is found again; a waiting VM
 *     that runs elsewhere already is `moved`.
 *  3. Cancelled: no new move; once the moves under way ended, waiting VMs are `cancelled`.
 *  4. A dead host: its waiting VMs cannot be live-migrated and are `failed` (NOVA_HOST_DOWN).
 *  5. Running VMs are moved in report order, at most `concurrency` at once; a VM whose last
 *     move failed waits out its back-off (retryDelayMs) first, and its next move avoids the
 *     host the last one failed on when another host fits.
 *  6. VMs in a transitional state (starting, stopping, …) are waited for: they end running
 *     (then moved) or stopped.
 *  7. When nothing else is left, stopped or failed VMs are `left` on the host (their disks
 *     live there; cold moves are not supported yet), and the drain ends: `cancelled` when
 *     a VM's move was called off, `incomplete` when a VM could not move, else `drained`.
 */
import type { DrainVmChange } from "../cluster/store/drains.js";
import type { DrainState, DrainVmState } from "../states/drain.js";
import { MIGRATION, type MigrationState } from "../states/migration.js";
import type { VmState } from "../states/vm.js";

/** What the planner reads of a drain. */
export interface PlanDrain {
  hostId: string;
  host: string;
  concurrency: number;
  cancelRequested: boolean;
  vms: readonly PlanEntry[];
}

/** One VM entry of the drain. */
export interface PlanEntry {
  vm: string;
  vmId: string | null;
  state: DrainVmState;
  migrationId: string | null;
  /** Where its move goes or went (after a failed move: the host it failed on). */
  targetHost: string | null;
  /** Moves tried so far. */
  attempts: number;
  /** When the last one was tried (ISO time); null: never. */
  lastAttemptAt: string | null;
}

/** A VM as the store shows it. */
export interface ObservedVm {
  id: string;
  name: string;
  state: VmState;
  hostId: string | null;
  host: string | null;
}

/** A migration as the store shows it. */
export interface ObservedMigration {
  id: string;
  vmId: string | null;
  state: MigrationState;
  stateReason: string;
  sourceHostId: string;
  targetHost: string;
}

/** What the planner sees. */
export interface DrainObservations {
  host: { liveness: "alive" | "dead" };
  /** The VMs on the host now, and every VM an entry names wherever it is. */
  vms: readonly ObservedVm[];
  /** The migrations entries name, and every migration under way of those VMs. */
  migrations: readonly ObservedMigration[];
  /** The time now (ms since the epoch), for back-offs. */
  now: number;
}

/** A VM's move is tried at most this many times before it is reported `failed`. */
export const MAX_MOVE_ATTEMPTS = 3;

/** How long to wait before the next move of a VM whose `attempts` moves failed: 5 s, then 10 s, … */
export function retryDelayMs(attempts: number): number {
  return 5000 * 2 ** Math.max(0, attempts - 1);
}

/** Whether a VM whose move just failed (its `attempts`-th) gets another one. */
export function retryLeft(attempts: number): boolean {
  return attempts < MAX_MOVE_ATTEMPTS;
}

/** The next thing to do. */
export type DrainAction =
  | { kind: "track"; vm: { id: string; name: string } }
  | { kind: "settle"; vm: string; to: DrainVmState; change: DrainVmChange }
  | { kind: "start-move"; vm: string; vmId: string; avoidHost?: string }
  | { kind: "finish"; to: Exclude<DrainState, "draining">; reason: string }
  | { kind: "wait"; reason: string };

/** VM states that end on their own (the reconciler moves them on): wait for them. */
const TRANSITIONAL: ReadonlySet<VmState> = new Set<VmState>([
  "pending",
  "scheduled",
  "starting",
  "stopping",
  "migrating",
  "arriving",
  "deleting",
]);

/** Decides the drain's next action; see the module header for the rules. */
export function nextAction(drain: PlanDrain, obs: DrainObservations): DrainAction {
  const vmById = new Map(obs.vms.map((v) => [v.id, v]));
  const known = new Set(drain.vms.flatMap((e) => (e.vmId ? [e.vmId] : [])));
  const knownNames = new Set(drain.vms.map((e) => e.vm));

  // 1. Newcomers.
  for (const vm of obs.vms) {
    if (vm.hostId === drain.hostId && !known.has(vm.id) && !knownNames.has(vm.name))
      return { kind: "track", vm: { id: vm.id, name: vm.name } };
  }

  // 2. Entries catch up with the world.
  for (const e of drain.vms) {
    if (e.state !== "waiting" && e.state !== "moving") continue;
    const vm = e.vmId ? vmById.get(e.vmId) : undefined;
    if (!vm) return settle(e, "gone", { reason: "deleted during the drain" });
    if (e.state === "moving") {
      const m = obs.migrations.find((x) => x.id === e.migrationId);
      if (!m)
        return settle(e, "failed", {
          code: "NOVA_DRAIN_MIGRATION_FAILED",
          reason: `its migration ${e.migrationId} is no longer recorded`,
        });
      if (m.state === "completed")
        return settle(e, "moved", { targetHost: m.targetHost, reason: `moved to ${m.targetHost}` });
      if (
        m.state === "failed" &&
        retryLeft(e.attempts) &&
        !drain.cancelRequested &&
        obs.host.liveness === "alive"
      )
        return settle(e, "waiting", {
          code: "NOVA_DRAIN_MIGRATION_FAILED",
          targetHost: m.targetHost,
          reason: `move ${e.attempts} of ${MAX_MOVE_ATTEMPTS} failed (migration ${m.id} to ${m.targetHost}: ${m.stateReason}); retried in ${retryDelayMs(e.attempts) / 1000} s, on another host if one fits`,
        });
      if (m.state === "failed" || m.state === "cancelled")
        return settle(e, "failed", {
          code: "NOVA_DRAIN_MIGRATION_FAILED",
          reason: `migration ${m.id} to ${m.targetHost} ${m.state}: ${m.stateReason}`,
        });
      continue;
    }
    const under = obs.migrations.find(
      (x) => x.vmId === vm.id && !MIGRATION.isFinal(x.state) && x.sourceHostId === drain.hostId,
    );
    if (under)
      return settle(e, "moving", {
        migrationId: under.id,
        targetHost: under.targetHost,
        reason: `migrating to ${under.targetHost}`,
      });
    if (vm.hostId !== drain.hostId && !TRANSITIONAL.has(vm.state))
      return settle(e, "moved", {
        targetHost: vm.host,
        reason: `on ${vm.host} now (moved by another action)`,
      });
  }

  const open = drain.vms.filter((e) => e.state === "waiting" || e.state === "moving");
  const moving = open.filter((e) => e.state === "moving");
  const waiting = open.filter((e) => e.state === "waiting");
  const vmOf = (e: PlanEntry) => vmById.get(e.vmId ?? "") as ObservedVm;

  // 3. Cancelled: let the moves under way end, start nothing, call off the rest.
  if (drain.cancelRequested) {
    if (moving.length > 0)
      return {
        kind: "wait",
        reason: `cancel requested; waiting for ${moving.length} move(s) under way to end`,
      };
    const first = waiting[0];
    if (first)
      return settle(first, "cancelled", { reason: "the drain was cancelled before its move started" });
    return finish(drain);
  }

  // 4. A dead host's VMs cannot be live-migrated.
  if (obs.host.liveness === "dead") {
    const first = waiting[0];
    if (first)
      return settle(first, "failed", {
        code: "NOVA_HOST_DOWN",
        reason: `host ${drain.host} went dead during the drain; its VMs cannot be live-migrated`,
      });
  }

  // 5. Move running VMs, a bounded few at a time; a failed one after its back-off.
  const onHost = waiting.filter((e) => vmOf(e).state === "running" && vmOf(e).hostId === drain.hostId);
  const backingOff = onHost.filter((e) => retryAt(e) > obs.now);
  const runnable = onHost.filter((e) => retryAt(e) <= obs.now);
  const next = runnable[0];
  if (next && moving.length < drain.concurrency)
    return {
      kind: "start-move",
      vm: next.vm,
      vmId: vmOf(next).id,
      ...(next.attempts > 0 && next.targetHost ? { avoidHost: next.targetHost } : {}),
    };
  if (moving.length > 0 || next || backingOff.length > 0)
    return {
      kind: "wait",
      reason: [
        `${moving.length} move(s) under way`,
        next ? `${runnable.length} VM(s) waiting for a slot` : "",
        ...backingOff.map((e) => `${e.vm} retried in ${Math.ceil((retryAt(e) - obs.now) / 1000)} s`),
      ]
        .filter(Boolean)
        .join(", "),
    };

  // 6. Wait for VMs on their way to running or stopped.
  const settling = waiting.filter((e) => TRANSITIONAL.has(vmOf(e).state));
  if (settling.length > 0)
    return {
      kind: "wait",
      reason: `waiting for ${settling.map((e) => `${e.vm} (${vmOf(e).state})`).join(", ")} to settle`,
    };

  // 7. Only VMs that do not run are left: report them, then end.
  const idle = waiting[0];
  if (idle) {
    const state = vmOf(idle).state;
    return settle(idle, "left", {
      reason: `not running (${state}): left on ${drain.host}, where its disk lives; cold moves are not supported yet — start it after the maintenance, or start it now to have it moved`,
    });
  }
  return finish(drain);
}

/** When an entry's next move may start (ms): at once, or after the back-off of its failed ones. */
function retryAt(e: PlanEntry): number {
  if (e.attempts === 0 || e.lastAttemptAt === null) return 0;
  return Date.parse(e.lastAttemptAt) + retryDelayMs(e.attempts);
}

function settle(e: PlanEntry, to: DrainVmState, change: DrainVmChange): DrainAction {
  return { kind: "settle", vm: e.vm, to, change };
}

function finish(drain: PlanDrain): DrainAction {
  const count = (s: DrainVmState) => drain.vms.filter((e) => e.state === s).length;
  const parts = [
    `${count("moved")} moved`,
    count("failed") ? `${count("failed")} could not move` : "",
    count("left") ? `${count("left")} not running, left on ${drain.host}` : "",
    count("cancelled") ? `${count("cancelled")} not started (cancelled)` : "",
    count("gone") ? `${count("gone")} deleted meanwhile` : "",
  ].filter(Boolean);
  const summary = `${parts.join(", ")}; ${drain.host} stays cordoned`;
  if (count("cancelled") > 0) return { kind: "finish", to: "cancelled", reason: `cancelled: ${summary}` };
  if (count("failed") > 0) return { kind: "finish", to: "incomplete", reason: summary };
  return { kind: "finish", to: "drained", reason: summary };
}
