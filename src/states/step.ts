/**
 * The execution step state machine (table `execution_steps`).
 *
 *   pending ──▶ running ──▶ completed
 *      │           ├──▶ failed / timed_out / cancelled ──retry──▶ pending
 *      │           ├──▶ pending (attempt failed, a retry is left; the step runs again)
 *      │           └──▶ running (a worker resumes it after an interrupted attempt)
 *      ├──▶ pending (an attempt failed before the step started, e.g. a secret was missing)
 *      ├──▶ waiting_approval ──approved──▶ completed; ──rejected──▶ failed; ──expired──▶ timed_out
 *      ├──▶ skipped (its condition was false)
 *      └──▶ cancelled
 */
import { defineStateMachine } from "../lib/state-machine.js";

export const STEP = defineStateMachine({
  name: "step",
  states: {
    pending: "not started (or reset for a retry)",
    running: "its step kind is running",
    completed: "done",
    failed: "its step kind failed (or its approval was rejected)",
    cancelled: "the execution was cancelled at this step",
    timed_out: "it ran past its time limit, or its approval expired",
    waiting_approval: "an approval step waiting for an approver",
    skipped: "not run",
  },
  initial: ["pending"],
  transitions: {
    pending: ["running", "waiting_approval", "skipped", "cancelled", "failed", "timed_out", "pending"],
    running: ["completed", "failed", "cancelled", "timed_out", "pending", "running"],
    completed: [],
    failed: ["pending"],
    cancelled: ["pending"],
    timed_out: ["pending"],
    waiting_approval: ["completed", "failed", "cancelled", "timed_out", "pending"],
    skipped: [],
  },
  final: ["completed", "failed", "cancelled", "timed_out", "skipped"],
});

/** A step state. */
export type StepState = (typeof STEP.list)[number];

/** Steps that are done for good: a run starts or resumes at the first step not in one. */
export const STEP_DONE: readonly StepState[] = STEP.final.filter((s) => STEP.transitions[s].length === 0);

/** Steps a retry puts back to pending (every state that may move there). */
export const STEP_RESETTABLE: readonly StepState[] = STEP.list.filter((s) => STEP.can(s, "pending"));
