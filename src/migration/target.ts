/**
 * Where a live migration takes the VM: another host of this cluster (host-target.ts, the
 * agents directly) or another cluster (cluster-target.ts, through ACP's hand-off). The
 * executor and its planner are the same for both; only these steps differ.
 */
import type { AgentIncomingEndpoints, AgentMigrationTuning } from "../api/types/agent.js";
import type { ClusterEvent } from "../api/types/events.js";
import type { AgentClient } from "../cluster/agent-client.js";
import type { Queryable } from "../cluster/store/db.js";
import type { VmRecord } from "../cluster/store/vms.js";

/** What the target says once asked to take the VM after the transfer. */
export interface TargetAnswer {
  /** `running` when the target runs the VM. */
  state: string;
  reason: string;
  /** When the target resumed the guest (epoch ms, its clock), if known. */
  resumedAt?: number;
}

export interface MigrationTarget {
  /** For messages: the target host's name, or "cluster NAME". */
  readonly label: string;
  /** Whether the target already holds the VM's image. */
  hasImage(vm: VmRecord): Promise<boolean>;
  /** Copies the VM's image from the source's host to the target. */
  copyImage(vm: VmRecord, source: AgentClient): Promise<void>;
  /** Starts the target's paused copy; returns where the source sends the VM. */
  prepare(
    vm: VmRecord,
    request: { migrationId: string; tuning: AgentMigrationTuning; transport: "auto" | "qemu" | "dwcp" },
  ): Promise<AgentIncomingEndpoints>;
  /** The transfer completed: the target takes the VM over and says whether it runs it. */
  finish(vm: VmRecord): Promise<TargetAnswer>;
  /**
   * Undo before the target ran the VM: its copy goes (or can never run); returns what was
   * done. Throws when that could not be made sure of.
   */
  remove(vm: VmRecord): Promise<string>;
  /** In the transaction that completes the migration: record where the VM is now. */
  takeOver(tx: Queryable, vm: VmRecord, reason: string): Promise<ClusterEvent[]>;
  /** After completion: what becomes of the source's paused copy. */
  afterComplete(vm: VmRecord, source: AgentClient): Promise<void>;
}
