/**
 * What a live migration does next, decided from its record, how far this server's run of
 * it got (`RunStep`) and what the executor observed (the source's last status, a failed
 * call, a cancel request, the deadline, a shutdown). Pure, so every case is unit-tested;
 * executor.ts performs the actions and orchestrator.ts schedules the runs.
 *
 *   picked up ─queued─▶ mark preparing ─▶ copy image (if the target lacks it) ─▶ prepare target
 *     ─▶ (cancel?) mark transferring "mirroring the disk" ─▶ start mirror ─▶ poll until in sync
 *        (over DWCP: only until the mirror runs; memory then overlaps the rest of the disk)
 *     ─▶ mark transferring "copying memory (pre-copy)" ─▶ start memory ─▶ poll until converged
 *     ─▶ mark switching-over ─▶ start switch-over ─▶ poll until sent ─▶ confirm on the target
 *     ─▶ (post-copy: poll until the last page) ─▶ complete
 *
 * Outcomes other than completing:
 * - rollback (failed | cancelled): any failure, cancel or timeout before the target runs
 *   the VM; the executor undoes through its Reverter.
 * - retry-later: an agent is unreachable during switch-over. Rolling back then could leave
 *   the VM running twice (the target may already have resumed it), so the migration stays
 *   in switching-over and the scheduler runs it again until both agents answer.
 * - lost: a failure after post-copy began; there is nothing to roll back to.
 * - abandon: the VM was deleted; the migration ends failed with nothing to undo.
 * A record found in preparing or transferring by a run that did not put it there means the
 * server restarted mid-transfer: the target's listening endpoints lived in the previous
 * server's memory, so it is rolled back. switching-over is re-runnable.
 */
import type { AgentOutgoingStatus } from "../api/types/agent.js";
import type { MigrationResult } from "../api/types/migrations.js";
import type { MigrationRecord } from "../cluster/store/migrations.js";
import type { MigrationState } from "../states/migration.js";

/** How far this server's run of a migration got; lives in the executor's memory only. */
export type RunStep =
  /** Nothing done by this run yet (a new run, or one after a restart or a retry-later). */
  | "picked-up"
  /** The record moved to preparing; the target may lack the VM's image. */
  | "preparing"
  /** The target holds the VM's image. */
  | "image-ready"
  /** The target's QEMU waits for the stream. */
  | "target-ready"
  /** The source mirrors the disk. */
  | "mirroring"
  /** The disk mirror is in sync (recorded); memory is next. */
  | "mirror-synced"
  /** The source sends memory (pre-copy, possibly post-copy later). */
  | "copying-memory"
  /** Memory converged and the source is paused (recorded); switch-over is next. */
  | "converged"
  /** The source finishes the mirror and sends the device state. */
  | "switching-over"
  /** The target answered whether it runs the VM. */
  | "confirmed";

/** Which progress phase a saved progress snapshot is labelled with (shown to users). */
export type ProgressPhase = "disk-mirror" | "memory" | "switch-over" | "post-copy";

/** One thing for the executor to do. */
export type MigrationAction =
  /** The migration already ended: nothing to do. */
  | { kind: "ended" }
  /** The VM was deleted: end the migration failed, with nothing to roll back. */
  | { kind: "abandon"; reason: string }
  /** Record a state change (compare-and-set); `result` is merged into the stored result. */
  | {
      kind: "mark";
      to: MigrationState;
      reason: string;
      result?: MigrationResult;
      /** Save the fresh source status as progress first. */
      progress?: ProgressPhase;
      next: RunStep;
    }
  /** Copy the VM's image blobs from the source to the target. */
  | { kind: "copy-image"; next: "image-ready" }
  /** Start the target's QEMU waiting for the stream. */
  | { kind: "prepare-target"; next: "target-ready" }
  /** Ask the source to mirror the disk. */
  | { kind: "start-mirror"; next: "mirroring" }
  /** Ask the source to send memory; it switches over by itself when `autoSwitchover`. */
  | { kind: "start-memory"; autoSwitchover: boolean; next: "copying-memory" }
  /** Save progress, ask the source to switch to post-copy (in the background), wait `ms`. */
  | { kind: "start-postcopy"; progress: ProgressPhase; ms: number }
  /** Ask the source to switch over. */
  | { kind: "start-switchover"; next: "switching-over" }
  /** Read the source's status. */
  | { kind: "poll" }
  /** Save the fresh status as progress (if given), then wait `ms` before the next poll. */
  | { kind: "wait"; ms: number; progress?: ProgressPhase }
  /** Save progress, keep the status the switch-over ended with, ask the target to run the VM. */
  | { kind: "confirm"; progress: ProgressPhase; next: "confirmed" }
  /** The target runs the VM: move the VM there and end the migration completed. */
  | { kind: "complete"; result: MigrationResult; progress?: ProgressPhase }
  /** Undo what was done and end the migration `outcome`. */
  | { kind: "rollback"; outcome: "failed" | "cancelled"; reason: string }
  /** Leave the migration in switching-over for the scheduler to run again. */
  | { kind: "retry-later"; reason: string }
  /** Post-copy failed: the VM is lost; end failed with nothing to roll back to. */
  | { kind: "lost"; reason: string };

/** What the executor knows when it asks for the next action. */
export interface Observations {
  step: RunStep;
  /** The server is shutting down. */
  shuttingDown: boolean;
  /** The user asked for a cancel (read fresh). */
  cancelRequested: boolean;
  /** Whether the migration's time budget is spent, and that budget. */
  deadline: { passed: boolean; timeoutSeconds: number };
  /** Whether the target already holds the VM's image (known in step `preparing`). */
  imageOnTarget?: boolean;
  /** This run copied the image to the target. */
  baseImageCopied: boolean;
  /** Whether post-copy is wanted, and whether this run already asked for it. */
  postcopy: { wanted: boolean; asked: boolean };
  /**
   * How long the bytes the source moved (`movedBytes`) had not grown by `STALL_MIN_BYTES`
   * at the last reading, in this step; absent before its first status.
   */
  stalledForMs?: number;
  /** The source's answer to the last `poll`, until the next action consumes it. */
  source?: { kind: "status"; status: AgentOutgoingStatus } | { kind: "unreachable"; forMs: number };
  /** The source's status when switch-over ended (step `confirmed`). */
  handedOver?: AgentOutgoingStatus;
  /** What the target reported when asked to run the VM (step `confirmed`). */
  target?: { state: string; reason: string; resumedAt?: number };
  /** The last action (or reading the observations for the next one) threw. */
  failure?: { action: MigrationAction["kind"] | "observe"; message: string; unreachable: boolean };
}

/** Timings the decisions use. */
export interface PlanPolicy {
  /** Time between polls of the source. */
  pollMs: number;
  /** How long the source may be unreachable mid-transfer before the migration is rolled back. */
  unreachableGraceMs: number;
  /**
   * How long nothing may move mid-transfer before the migration is rolled back: the link
   * between the hosts is down or stalled. A dead link can keep connections open (TCP
   * retransmits for minutes), so without this only the deadline would end it.
   */
  stallGraceMs: number;
}

/**
 * The least growth of `movedBytes` that counts as moving. Small enough that a slow link
 * moves it every few seconds; large enough that the few bytes a stalled path still lets
 * through do not.
 */
export const STALL_MIN_BYTES = 256 * 1024;

/** A stall shorter than this is not named as the cause when the deadline passes. */
const STALL_NAMED_MS = 5000;

/**
 * What the source has moved so far, disk and memory together. QEMU counts it on its side
 * of the stream; over DWCP that stream feeds a bounded relay, so it stops growing soon
 * after the link does.
 */
export function movedBytes(s: AgentOutgoingStatus): number {
  return (s.mirror?.offset ?? 0) + (s.memory?.transferredBytes ?? 0);
}

/** When the source last moved, and how much it had moved then. */
export interface MovedMark {
  bytes: number;
  at: number;
}

/**
 * The mark a stall is measured from once a status shows `bytes` moved at `now`: moved on
 * by a growth of `STALL_MIN_BYTES`, or by a count that went down (a restarted agent's
 * counters: as far as anyone knows, it moved).
 */
export function nextMovedMark(prev: MovedMark | undefined, bytes: number, now: number): MovedMark {
  if (!prev || bytes >= prev.bytes + STALL_MIN_BYTES || bytes < prev.bytes) return { bytes, at: now };
  return prev;
}

/** The record fields the decisions use. */
export type PlanRecord = Pick<MigrationRecord, "state" | "vmId" | "sourceHost" | "targetHost">;

/** Decides the next action for migration `m`. */
export function nextAction(m: PlanRecord, o: Observations, policy: PlanPolicy): MigrationAction {
  if (o.failure) return afterFailure(m, o);
  const fail = (reason: string): MigrationAction => ({ kind: "rollback", outcome: "failed", reason });
  switch (o.step) {
    case "picked-up":
      if (m.state === "completed" || m.state === "failed" || m.state === "cancelled")
        return { kind: "ended" };
      if (!m.vmId) return { kind: "abandon", reason: "the VM was deleted" };
      if (m.state === "queued")
        return { kind: "mark", to: "preparing", reason: "preparing the target", next: "preparing" };
      if (m.state === "switching-over") return { kind: "start-switchover", next: "switching-over" };
      return fail(
        "the server restarted (or another replica took over as control-plane leader) during the transfer",
      );
    case "preparing":
      return o.imageOnTarget
        ? { kind: "prepare-target", next: "target-ready" }
        : { kind: "copy-image", next: "image-ready" };
    case "image-ready":
      return { kind: "prepare-target", next: "target-ready" };
    case "target-ready":
      if (m.state === "transferring") return { kind: "start-mirror", next: "mirroring" };
      if (o.cancelRequested)
        return { kind: "rollback", outcome: "cancelled", reason: "cancelled by the user" };
      return {
        kind: "mark",
        to: "transferring",
        reason: "mirroring the disk",
        result: { baseImageCopied: o.baseImageCopied },
        next: "target-ready",
      };
    case "mirroring":
    case "copying-memory":
      return transferPoll(m, o, policy);
    case "mirror-synced":
      return { kind: "start-memory", autoSwitchover: !o.postcopy.wanted, next: "copying-memory" };
    case "converged":
      return { kind: "start-switchover", next: "switching-over" };
    case "switching-over":
    case "confirmed":
      return switchOverPoll(m, o, policy);
  }
}

/** Polls while the guest runs on the source: cancellable, bounded by the deadline and a grace for an unreachable source. */
function transferPoll(m: PlanRecord, o: Observations, policy: PlanPolicy): MigrationAction {
  const fail = (reason: string): MigrationAction => ({ kind: "rollback", outcome: "failed", reason });
  const memoryStep = o.step === "copying-memory";
  if (!o.source) {
    if (o.shuttingDown) return fail("the server is shutting down");
    if (o.cancelRequested) return { kind: "rollback", outcome: "cancelled", reason: "cancelled by the user" };
    if (o.deadline.passed) return fail(timeoutReason(m, o));
    return { kind: "poll" };
  }
  if (o.source.kind === "unreachable") {
    if (o.source.forMs > policy.unreachableGraceMs)
      return fail(`source host ${m.sourceHost} unreachable for ${policy.unreachableGraceMs / 1000} s`);
    return { kind: "wait", ms: policy.pollMs };
  }
  const s = o.source.status;
  // The memory status still shows how an earlier migration of this VM ended until this
  // one's memory step starts, so it is not checked while mirroring.
  const broken = statusFailure(m, s, memoryStep);
  if (broken) return fail(broken);
  if ((o.stalledForMs ?? 0) > policy.stallGraceMs)
    return fail(
      `nothing moved toward target host ${m.targetHost} for ${policy.stallGraceMs / 1000} s: the link between the hosts is down or stalled (check it, then migrate again)`,
    );
  if (!memoryStep) {
    // Over DWCP memory and disk share one session whose channel priorities keep the disk
    // moving, so memory need not wait for the mirror (nor for its start, which negotiates
    // across the path); the source holds QEMU's switch-over back until the mirror is in
    // sync (docs/migration.md, "Memory and disk together").
    const inSync = s.mirror?.ready === true;
    if (inSync || (s.transport?.chosen === "dwcp" && !o.postcopy.wanted)) {
      return {
        kind: "mark",
        to: "transferring",
        reason: inSync
          ? "copying memory (pre-copy)"
          : "copying memory while the disk mirror catches up (pre-copy)",
        // The mirror's size is final only once in sync (else it is recorded at convergence);
        // overlapped, no progress is saved: one store write less before memory starts.
        ...(inSync
          ? {
              result: { baseImageCopied: o.baseImageCopied, diskBytes: s.mirror!.len },
              progress: "disk-mirror",
            }
          : { result: { baseImageCopied: o.baseImageCopied } }),
        next: "mirror-synced",
      };
    }
    return { kind: "wait", ms: policy.pollMs, progress: "disk-mirror" };
  }
  const mem = s.memory;
  // Post-copy only when asked for (a failure after the switch loses the VM). It is started
  // during the first pre-copy pass: a later switch gains nothing for a guest that cannot
  // converge, and on QEMU 7.2 under TCG it corrupted guest memory (the VM must stop before
  // QEMU's second dirty-bitmap sync there). See docs/migration.md, "Busy guests under TCG".
  if (o.postcopy.wanted && !o.postcopy.asked && mem?.status === "active" && mem.pass >= 1)
    return { kind: "start-postcopy", progress: "memory", ms: policy.pollMs };
  if (mem?.status === "pre-switchover" || mem?.status === "device" || mem?.status === "completed") {
    return {
      kind: "mark",
      to: "switching-over",
      reason: "memory converged; the source is paused",
      // The mirror's size is final only now when memory started before it was in sync.
      result: { baseImageCopied: o.baseImageCopied, ...(s.mirror ? { diskBytes: s.mirror.len } : {}) },
      progress: "memory",
      next: "converged",
    };
  }
  return { kind: "wait", ms: policy.pollMs, progress: "memory" };
}

/** Why the deadline ended a transfer: a stalled link, a disk that did not sync, or a busy guest. */
function timeoutReason(m: PlanRecord, o: Observations): string {
  const after = `timed out after ${o.deadline.timeoutSeconds} s`;
  const stalled = o.stalledForMs ?? 0;
  if (stalled >= STALL_NAMED_MS)
    return `${after}: nothing moved toward target host ${m.targetHost} for the last ${Math.round(stalled / 1000)} s (the link between the hosts is down or stalled; check it, then migrate again)`;
  if (o.step === "mirroring")
    return `${after} while mirroring the disk (the guest writes its disk faster than the link sends it, or the disk needs longer; try a longer timeout)`;
  return `${after} (the guest dirties memory faster than it can be sent; try auto-converge, a higher downtime limit or post-copy)`;
}

/**
 * Polls once the source is paused (and, in post-copy, after the target took over): not
 * cancellable, and an unreachable source or a shutdown hands the migration back to the
 * scheduler instead of rolling back.
 */
function switchOverPoll(m: PlanRecord, o: Observations, policy: PlanPolicy): MigrationAction {
  const postcopy = o.step === "confirmed";
  if (postcopy) {
    if (!o.target) throw new Error("step confirmed without the target's answer");
    if (o.target.state !== "running")
      return {
        kind: "rollback",
        outcome: "failed",
        reason: `the target did not resume the VM: ${o.target.reason || o.target.state}`,
      };
    if (o.handedOver?.memory?.status !== "postcopy-active")
      return { kind: "complete", result: resultOf(o.handedOver, o.target) };
  }
  if (!o.source) {
    if (o.shuttingDown) return { kind: "retry-later", reason: "the server is shutting down" };
    return { kind: "poll" };
  }
  if (o.source.kind === "unreachable")
    return { kind: "retry-later", reason: `source ${m.sourceHost} is unreachable` };
  const s = o.source.status;
  const broken = statusFailure(m, s, true);
  if (broken) {
    // The target runs the VM and pulls its remaining pages from the source.
    return postcopy
      ? { kind: "lost", reason: lostReason(broken) }
      : { kind: "rollback", outcome: "failed", reason: broken };
  }
  if (postcopy) {
    return s.memory?.status === "completed"
      ? { kind: "complete", result: resultOf(s), progress: "post-copy" }
      : { kind: "wait", ms: policy.pollMs, progress: "post-copy" };
  }
  if (s.memory?.status === "completed" || s.memory?.status === "postcopy-active")
    return { kind: "confirm", progress: "switch-over", next: "confirmed" };
  return { kind: "wait", ms: policy.pollMs, progress: "switch-over" };
}

/** What ends a migration after an action threw. */
function afterFailure(m: PlanRecord, o: Observations): MigrationAction {
  const f = o.failure;
  if (!f) throw new Error("afterFailure without a failure");
  if (f.unreachable && f.action === "start-switchover")
    return { kind: "retry-later", reason: `source ${m.sourceHost} is unreachable` };
  if (f.unreachable && f.action === "confirm")
    return { kind: "retry-later", reason: `target ${m.targetHost} is unreachable` };
  // In post-copy the target already runs the VM on pages it pulls from the source.
  if ((f.action === "poll" || f.action === "wait") && o.step === "confirmed")
    return { kind: "lost", reason: lostReason(f.message) };
  return { kind: "rollback", outcome: "failed", reason: f.message };
}

/** Why the source's status ends the migration, if it does. */
function statusFailure(m: PlanRecord, s: AgentOutgoingStatus, checkMemory: boolean): string | undefined {
  if (s.vmStatus === "absent") return `the source QEMU on ${m.sourceHost} is gone`;
  if (s.mirror?.error) return `disk mirror failed: ${s.mirror.error}`;
  const mem = checkMemory ? s.memory : null;
  if (mem && (mem.status === "failed" || mem.status === "cancelled"))
    return `memory transfer ${mem.status}${mem.errorDesc ? `: ${mem.errorDesc}` : ""}`;
  return undefined;
}

function lostReason(why: string): string {
  return `post-copy failed, the VM's memory is split between hosts and it is lost: ${why}`;
}

/**
 * The figures a completed migration records from the source's final status and the
 * target's answer. The guest's pause spans two hosts' clocks; a negative difference
 * (clocks apart by more than the pause) is left out rather than reported.
 */
function resultOf(s: AgentOutgoingStatus | undefined, target?: Observations["target"]): MigrationResult {
  const mem = s?.memory;
  const pause =
    mem?.stoppedAt !== undefined && target?.resumedAt !== undefined ? target.resumedAt - mem.stoppedAt : -1;
  return {
    ...(mem?.totalTimeMs === undefined ? {} : { totalTimeMs: mem.totalTimeMs }),
    ...(mem?.downtimeMs === undefined ? {} : { downtimeMs: mem.downtimeMs }),
    ...(mem?.downtimeBreakdown ? { downtimeBreakdown: mem.downtimeBreakdown } : {}),
    ...(pause >= 0 ? { guestPauseMs: Math.round(pause) } : {}),
    memoryBytes: mem?.transferredBytes ?? 0,
  };
}
