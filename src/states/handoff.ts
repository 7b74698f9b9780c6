/**
 * ACP, the cross-cluster ownership hand-off of one VM (docs/federation.md §10): the
 * source cluster's side (table `acp_outgoing`) and the destination's (`acp_incoming`).
 * The Promela model (spec/acp.pml, checked by spin in npm test) names these same states.
 *
 * Source (owner at epoch e):
 *
 *   preparing ──PREPARED(D)──▶ transferring ──QEMU sent everything, source paused──▶ released
 *      │                          │            (commits "released to D at e+1", signed)  │
 *      └──── cancel, failure ─────┴──▶ aborting ──ABORTED(D)──▶ aborted                  │
 *                                                                                         │
 *          completed ◀──OWNED(D, e+1): the source copy is removed────────────────────────┤
 *          reclaimed ◀──RETURNED(D, e+2): D could not run it; the source copy resumes────┘
 *
 * Destination:
 *
 *   (nothing) ──PREPARE──▶ prepared ──RELEASE(S, e+1), own copy whole──▶ resuming ──copy runs──▶ owned
 *   (nothing) ──ABORT──▶ aborted        │                                    │ (signs OWNED only now)
 *                                       │ ──RELEASE, own copy gone──▶ returned ◀──copy died before it ran
 *                                       └──ABORT──▶ aborted (its copy removed)   (signed back at e+2)
 *
 * The source's commit of `released` is the one point where ownership moves: before it the
 * source may abort on its own (the destination never resumes without the signed release);
 * after it the source never runs the VM again unless the destination signs it back at a
 * higher epoch. Every move is a compare-and-set on the from-state
 * (cluster/store/acp.ts); federation/acp/plan.ts decides the moves.
 */
import { defineStateMachine } from "../lib/state-machine.js";

export const HANDOFF_SOURCE = defineStateMachine({
  name: "hand-off (source)",
  states: {
    preparing: "the destination is asked to prepare a paused copy; the VM runs here, owned here",
    transferring: "the destination holds a paused copy; memory and disk cross while the VM runs here",
    released: "signed over to the destination at the next epoch; this copy is paused and never resumes",
    completed: "the destination owns and runs the VM; this copy is gone",
    aborting: "called off before the release; the VM runs here; the destination is told to drop its copy",
    aborted: "called off; the destination confirmed it dropped its copy",
    reclaimed: "the destination could not run it and signed it back: owned here again, resumed here",
  },
  initial: ["preparing"],
  transitions: {
    preparing: ["transferring", "aborting"],
    transferring: ["released", "aborting"],
    released: ["completed", "reclaimed"],
    completed: [],
    aborting: ["aborted"],
    aborted: [],
    reclaimed: [],
  },
  final: ["completed", "aborted", "reclaimed"],
});

export const HANDOFF_TARGET = defineStateMachine({
  name: "hand-off (destination)",
  states: {
    prepared: "a paused copy waits here; it never runs without the source's signed release",
    resuming: "released to this cluster at the new epoch: owned here; its copy is being resumed",
    owned: "owned and running here; `owned` is signed only once the copy runs",
    returned:
      "released here but this copy was gone, or died before it ran: signed back to the source at the epoch after",
    aborted:
      "the source called it off: this copy is removed (also recorded for a hand-off never prepared, so a late PREPARE is refused)",
  },
  initial: ["prepared", "aborted"],
  transitions: {
    prepared: ["resuming", "returned", "aborted"],
    resuming: ["owned", "returned"],
    owned: [],
    returned: [],
    aborted: [],
  },
  final: ["owned", "returned", "aborted"],
});

/** A source-side hand-off state. */
export type HandoffSourceState = (typeof HANDOFF_SOURCE.list)[number];
/** A destination-side hand-off state. */
export type HandoffTargetState = (typeof HANDOFF_TARGET.list)[number];
