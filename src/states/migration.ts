/**
 * The migration state machine (table `migrations`, API `Migration.state`).
 *
 *   queued ──target prepared──▶ preparing ──disk mirror / memory pre-copy──▶ transferring
 *     │                            │                                          │  (transferring
 *     │                            │                                          │   → transferring:
 *     │                            │                                          │   the next phase)
 *     │                            │                          memory converged, source paused
 *     │                            │                                          ▼
 *     │                            │                                    switching-over ──▶ completed
 *     └────────────┴──── failed / cancelled (from any active state; rollback restores the source)
 *
 * migration/plan.ts decides which move comes next (nextAction, every case unit-tested) and
 * migration/executor.ts records it; every persisted move is a compare-and-set on the
 * from-state (cluster/store/migrations.ts).
 */
import { defineStateMachine } from "../lib/state-machine.js";

export const MIGRATION = defineStateMachine({
  name: "migration",
  states: {
    queued: "accepted; waiting for its turn (one migration per VM and host pair at a time)",
    preparing: "copying the image when the target lacks it and preparing the target's QEMU",
    transferring:
      "mirroring the disk and copying memory while the guest runs (over DWCP at once, else one after the other)",
    "switching-over": "memory converged; the source is paused while the last pages cross",
    completed: "the VM runs on the target; the source copy is gone",
    failed: "stopped by an error; rollback says what was undone",
    cancelled: "stopped by the user; rollback says what was undone",
  },
  initial: ["queued"],
  transitions: {
    queued: ["preparing", "failed", "cancelled"],
    preparing: ["transferring", "failed", "cancelled"],
    transferring: ["transferring", "switching-over", "failed", "cancelled"],
    "switching-over": ["completed", "failed", "cancelled"],
    completed: [],
    failed: [],
    cancelled: [],
  },
  final: ["completed", "failed", "cancelled"],
});

/** A migration state. */
export type MigrationState = (typeof MIGRATION.list)[number];
