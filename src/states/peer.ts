/**
 * The federation peer state machine (table `fed_peers`, docs/federation.md §6): a cluster
 * this one exchanges ASS records with.
 *
 *   active ──violation proven──▶ quarantined
 *     ▲                               │
 *     └──── admin lifts it ───────────┘
 *   active | quarantined ──admin removes──▶ removed
 *
 * Quarantine is final in the sense of state-machine.ts: nothing lifts it on its own; only
 * an admin's explicit action does.
 */
import { defineStateMachine } from "../lib/state-machine.js";

export const PEER = defineStateMachine({
  name: "peer",
  states: {
    active: "records are exchanged with it",
    quarantined: "it was caught misbehaving: nothing it sends or relays is accepted until an admin lifts it",
    removed: "an admin removed it: no exchange, its records are gone",
  },
  initial: ["active"],
  transitions: {
    active: ["quarantined", "removed"],
    quarantined: ["active", "removed"],
    removed: [],
  },
  final: ["quarantined", "removed"],
});

/** A peer state. */
export type PeerState = (typeof PEER.list)[number];
