/**
 * The maintenance drain of a host (table `host_drains`) and of each VM in it (table
 * `host_drain_vms`), docs/operations.md "Draining a host".
 *
 *   draining ──every running VM moved──▶ drained
 *      │     ──some VM could not move──▶ incomplete
 *      └─────cancel, in-flight moves ended──▶ cancelled
 *
 * Per VM:
 *
 *   waiting ──migration accepted──▶ moving ──completed──▶ moved
 *      ▲                              ├──failed / cancelled──▶ failed
 *      └──────failed, attempts left───┘  (retried after a back-off, on another host if one fits)
 *      ├──refused (no host fits, …) with no attempt left──▶ failed
 *      ├──not running when nothing else is left──▶ left  (stopped: its disk stays on the host)
 *      ├──the drain was cancelled first──▶ cancelled
 *      └──deleted meanwhile──▶ gone        (moving ──deleted──▶ gone too)
 *
 * The host stays cordoned in every end state. migration/drain-plan.ts decides the next move
 * (nextAction, every case unit-tested) and migration/drain-executor.ts records it; every
 * persisted move is a compare-and-set on the from-state (cluster/store/drains.ts).
 */
import { defineStateMachine } from "../lib/state-machine.js";

export const DRAIN = defineStateMachine({
  name: "drain",
  states: {
    draining: "the host is cordoned and its VMs are being live-migrated off, a bounded few at a time",
    drained:
      "every VM that ran on the host runs elsewhere; stopped VMs are reported as left (their disks stay); the host stays cordoned",
    incomplete:
      "the drain ended with VMs it could not move still on the host; the report says why for each; the host stays cordoned",
    cancelled:
      "cancelled by the user: no new move was started after the cancel, moves under way finished; the host stays cordoned",
  },
  initial: ["draining"],
  transitions: {
    draining: ["drained", "incomplete", "cancelled"],
    drained: [],
    incomplete: [],
    cancelled: [],
  },
  final: ["drained", "incomplete", "cancelled"],
});

/** A drain state. */
export type DrainState = (typeof DRAIN.list)[number];

export const DRAIN_VM = defineStateMachine({
  name: "drain-vm",
  states: {
    waiting: "on the host, not moved yet (or its last move failed and is retried after a back-off)",
    moving: "its live migration is under way (the entry names it)",
    moved: "runs on another host (the entry names it and the migration)",
    failed:
      "could not be moved: no host fits, or its migration was refused or failed (code and reason say which)",
    left: "not running (stopped or failed) and left on the host: its disk lives there; cold moves are not supported yet",
    cancelled: "the drain was cancelled before this VM's move started",
    gone: "deleted during the drain",
  },
  initial: ["waiting"],
  transitions: {
    waiting: ["moving", "moved", "failed", "left", "cancelled", "gone"],
    moving: ["moved", "failed", "gone", "waiting"],
    moved: [],
    failed: [],
    left: [],
    cancelled: [],
    gone: [],
  },
  final: ["moved", "failed", "left", "cancelled", "gone"],
});

/** A drain entry's state. */
export type DrainVmState = (typeof DRAIN_VM.list)[number];
