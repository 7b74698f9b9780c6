/**
 * The queue job state machine (table `exec_jobs`): the worker pool's unit of work,
 * one per execution attempt chain.
 *
 *   queued ──claimed under a lease──▶ running ──done──▶ completed
 *      ▲                                 │
 *      └── retry / lease expired ────────┤
 *      └── operator requeue ── dead ◀────┘ no attempt left
 */
import { defineStateMachine } from "../lib/state-machine.js";

export const JOB = defineStateMachine({
  name: "job",
  states: {
    queued: "waiting for a worker (run_at says from when)",
    running: "a worker holds its lease (locked_by, lease_expires_at)",
    completed: "finished; its execution records the outcome",
    dead: "no attempt left; in the dead-letter queue until requeued",
  },
  initial: ["queued"],
  transitions: {
    queued: ["running"],
    running: ["completed", "queued", "dead"],
    completed: [],
    dead: ["queued"],
  },
  final: ["completed", "dead"],
});

/** A job state. */
export type JobState = (typeof JOB.list)[number];
