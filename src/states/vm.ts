/**
 * The VM lifecycle state machine, enforced by the server.
 *
 *   pending ──place──▶ scheduled ──agent starts QEMU──▶ starting ──QEMU up──▶ running
 *                                                          │                    │
 *                                                          ▼                    ▼ stop / restart
 *                                   failed ◀──── QEMU died / start failed ── stopping
 *                                     │                                         │
 *                                     └── start ──▶ starting        stopped ◀───┘
 *                                                                      │
 *                                                    start ──▶ starting (restart: automatically)
 *   any state but deleting ──delete──▶ deleting ──agent removed it──▶ (row gone)
 *   running ──migrate──▶ migrating ──completed, failed or cancelled──▶ running (on the
 *   target or still on the source); ──both QEMUs lost──▶ failed
 *   (a hand-off from another cluster) arriving ──owned here──▶ running; ──called off──▶ deleting
 *   scheduled, starting or running with `ha: restart` ──its host died and its lease ran
 *   out (cluster/ha-plan.ts)──▶ scheduled on another host
 *
 * `desired_state` records what the user asked for (running, stopped, deleted); the
 * reconciler (cluster/reconciler.ts) moves `state` towards it using what the agent reports.
 * User actions are checked here so an illegal one is refused with the state it met and
 * the actions that state allows.
 */
import { NovaError } from "../lib/errors.js";
import { defineStateMachine } from "../lib/state-machine.js";

export const VM = defineStateMachine({
  name: "vm",
  states: {
    pending: "accepted, waiting for a host",
    scheduled: "placed on a host, QEMU not started yet",
    starting: "the agent is starting QEMU",
    running: "QEMU is running the guest",
    stopping: "the agent is shutting the guest down",
    stopped: "not running; its disk stays on its host",
    failed: "QEMU died or could not start; state_reason says why",
    deleting: "the agent is removing the VM and its disk",
    migrating: "moving to another host; cancel the migration to stop it",
    arriving:
      "coming from another cluster: a paused copy waits here until the hand-off makes it this cluster's",
  },
  initial: ["pending", "arriving"],
  // The transitions the reconciler may make (user actions included). Every other state
  // rests until the user or the agent's report moves it; `deleting` ends with the row
  // removed, so it alone is final.
  transitions: {
    pending: ["scheduled", "failed", "deleting"],
    scheduled: ["starting", "stopped", "failed", "deleting"],
    starting: ["running", "stopping", "stopped", "failed", "deleting", "scheduled"],
    running: ["stopping", "stopped", "failed", "deleting", "migrating", "scheduled"],
    stopping: ["stopped", "failed", "deleting"],
    stopped: ["starting", "deleting"],
    failed: ["starting", "deleting"],
    deleting: [],
    migrating: ["running", "failed"],
    arriving: ["running", "failed", "deleting"],
  },
  final: ["deleting"],
});

/** Every lifecycle state. */
export const VM_STATES = VM.states;

/** A VM lifecycle state. */
export type VmState = (typeof VM.list)[number];

/** The operations a user can ask for. */
export type VmAction = "start" | "stop" | "restart" | "delete" | "migrate";

/** Which user actions each state allows. */
export const ALLOWED_ACTIONS: Record<VmState, readonly VmAction[]> = {
  pending: ["delete"],
  scheduled: ["stop", "delete"],
  starting: ["stop", "delete"],
  running: ["stop", "restart", "delete", "migrate"],
  stopping: ["delete"],
  stopped: ["start", "delete"],
  failed: ["start", "delete"],
  deleting: [],
  migrating: [],
  arriving: [],
};

/** The transitions the reconciler may make (user actions included). */
export const TRANSITIONS = VM.transitions;

/** True when `state` is one of the lifecycle states. */
export function isVmState(state: string): state is VmState {
  return VM.is(state);
}

/** Throws NOVA_ILLEGAL_STATE unless `action` is allowed in `state`. */
export function assertActionAllowed(vmName: string, state: VmState, action: VmAction): void {
  const allowed = ALLOWED_ACTIONS[state];
  if (allowed.includes(action)) return;
  const allowedText = allowed.length > 0 ? allowed.join(", ") : "nothing until it finishes";
  throw new NovaError(
    "NOVA_ILLEGAL_STATE",
    `Cannot ${action} VM ${vmName}: it is ${state} (${VM_STATES[state]}); in this state it allows: ${allowedText}.`,
    { details: { vm: vmName, state, action, allowedActions: allowed } },
  );
}

/** Throws NOVA_INTERNAL unless `from → to` is a legal transition (a reconciler bug). */
export function assertTransition(from: VmState, to: VmState): void {
  if (from === to || VM.can(from, to)) return;
  throw new NovaError("NOVA_INTERNAL", `Illegal VM state transition ${from} → ${to}`, {
    details: { from, to },
  });
}

/** States in which a VM holds memory on its host (counted against the host's capacity). */
export const RESERVING_STATES: readonly VmState[] = [
  "scheduled",
  "starting",
  "running",
  "stopping",
  "migrating",
  "arriving",
];
