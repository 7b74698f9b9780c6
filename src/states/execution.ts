/**
 * The execution state machine, enforced on every transition (cluster/store/executions.ts
 * moves a row only by a compare-and-set on its from-state).
 *
 *   submit ─┬─ plan needs approval ─▶ pending_approval ─approve─▶ approved ──▶ queued
 *           │                            │  reject ─▶ rejected
 *           │                            │  approval window passes ─▶ timed_out
 *           └─────────────────────────────────────────────────────────────▶ queued
 *   queued ──worker claims──▶ running ──all steps done──▶ completed
 *   running ──step failed, retry left──▶ queued (backoff; resumes at the failed step)
 *   running ──worker died (lease expired)──▶ queued (the reaper hands it back)
 *   running ──the next step's asset is busy (lock: step)──▶ queued (resumes at that step)
 *   running ──step failed, no retry left──▶ failed (no step done) / partial (some done)
 *   running ──step or execution time limit──▶ timed_out
 *   running ──approval step──▶ pending_approval (mutexes released while waiting)
 *   pending_approval, approved, queued, running ──cancel──▶ cancelled
 *   failed, partial, timed_out ──retry / DLQ requeue──▶ queued
 *
 * completed, cancelled and rejected are final; failed, partial and timed_out are final
 * unless an operator retries them (they sit in the dead-letter queue until then).
 */
import { NovaError } from "../lib/errors.js";
import { defineStateMachine } from "../lib/state-machine.js";

export const EXECUTION = defineStateMachine({
  name: "execution",
  states: {
    pending_approval: "waiting for an approver (before the run, or at an approval step)",
    approved: "approved; about to be queued",
    rejected: "an approver rejected it; nothing more runs",
    queued: "waiting for a worker (or for a retry's backoff, or for an asset's mutex before its next step)",
    running: "a worker holds its lease and runs its steps",
    completed: "every step completed",
    failed: "a step failed before any step completed, and no retry is left",
    cancelled: "cancelled; current_step says where it stopped",
    timed_out: "a step, the execution or its approval ran past its time limit",
    partial: "some steps completed, then a step failed and no retry is left",
  },
  initial: ["pending_approval", "queued"],
  transitions: {
    pending_approval: ["approved", "rejected", "timed_out", "cancelled"],
    approved: ["queued", "cancelled"],
    rejected: [],
    queued: ["running", "cancelled", "queued"],
    running: ["completed", "failed", "partial", "cancelled", "timed_out", "queued", "pending_approval"],
    completed: [],
    failed: ["queued"],
    cancelled: [],
    timed_out: ["queued"],
    partial: ["queued"],
  },
  final: ["completed", "cancelled", "rejected", "failed", "partial", "timed_out"],
});

/** Every execution state with what it means. */
export const EXEC_STATES = EXECUTION.states;

/** An execution state. */
export type ExecState = (typeof EXECUTION.list)[number];

/** Allowed transitions: from → the states it may move to. */
export const EXEC_TRANSITIONS = EXECUTION.transitions;

/** States from which nothing moves without an operator. */
export const FINAL_STATES: readonly ExecState[] = EXECUTION.final;

/** States that can be retried (they are in the dead-letter queue). */
export const RETRYABLE_STATES: readonly ExecState[] = EXECUTION.final.filter((s) =>
  EXECUTION.can(s, "queued"),
);

/** True when `from → to` is allowed. */
export function canTransition(from: ExecState, to: ExecState): boolean {
  return EXECUTION.can(from, to);
}

/** Throws NOVA_ILLEGAL_STATE naming the state met and what it allows. */
export function assertExecTransition(id: string, from: ExecState, to: ExecState, action: string): void {
  if (canTransition(from, to)) return;
  throw new NovaError(
    "NOVA_ILLEGAL_STATE",
    `Cannot ${action} execution ${id}: it is ${from} (${EXEC_STATES[from]}).`,
    { details: { execution: id, state: from, action, allowedNext: EXEC_TRANSITIONS[from] } },
  );
}
