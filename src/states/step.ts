/**
 * The execution step state machine (table `execution_steps`).
 *
 *   pending ──▶ running ──▶ completed
 *      │           ├──▶ failed / timed_out / cancelled ──retry──▶ pending
 *      │           └──▶ pending (attempt interrupted; the step runs again)
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
    pending: ["running", "waiting_approval", "skipped", "cancelled", "failed", "timed_out"],
    running: ["completed", "failed", "cancelled", "timed_out", "pending"],
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
