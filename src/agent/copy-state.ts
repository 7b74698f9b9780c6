/**
 * What a host holds of a VM, for ACP's planner (docs/federation.md §10): `running`,
 * `paused` (the whole VM, resumable), `incomplete` (a destination that has not received it
 * all) or `gone`. Pure: MigrationService reads QEMU (query-status, query-migrate) and the
 * VM's record, and asks this.
 *
 * The answer comes from QEMU, not from what the agent remembers doing, so it is right
 * after an agent restart (the agent re-adopts QEMU). The one fact QEMU cannot give is
 * whether it was started to receive a migration: a paused QEMU with a migration status
 * other than `completed` may be a source stopped at its switch-over (it holds the whole
 * VM) or a destination part-way through (it does not). That comes from vm.json, which the
 * agent writes before it starts such a QEMU and clears once it resumed it.
 *
 * Where in doubt the answer is the one ACP acts on safely: a destination not known to
 * hold the whole VM is `incomplete` (the hand-off then gives the VM back to the source,
 * which still holds it); a source that is stopped is `paused` (an abort or a return then
 * resumes it rather than leave it paused for good).
 */
import type { AgentCopyState } from "../api/types/agent.js";

/** What the agent read about one VM. */
export interface CopyObservation {
  /** The VM's QEMU as it answered QMP; null: no QEMU for the VM on this host. */
  qemu: { runState: string; migrationStatus: string } | null;
  /** The migration this QEMU was started to receive, until it was resumed (vm.json). */
  incomingMigrationId?: string | undefined;
  /** The outgoing migration whose memory transfer this agent started (vm.json). */
  outgoingMigrationId?: string | undefined;
  /**
   * Why the DWCP relay feeding the incoming migration failed for good, if it did: the
   * stream was never verified end to end, so the copy is not trusted to run.
   */
  incomingRelayFailure?: string | undefined;
}

/** The copy state of a VM on this host. */
export function copyStateOf(o: CopyObservation): AgentCopyState {
  const ids = {
    ...(o.incomingMigrationId ? { incomingMigrationId: o.incomingMigrationId } : {}),
    ...(o.outgoingMigrationId ? { outgoingMigrationId: o.outgoingMigrationId } : {}),
  };
  const { qemu } = o;
  const answer = (state: AgentCopyState["state"], reason: string): AgentCopyState => ({
    state,
    reason,
    qemu,
    ...ids,
  });
  if (!qemu) return answer("gone", "no QEMU for this VM on this host");
  const { runState, migrationStatus } = qemu;
  if (runState === "running") return answer("running", "QEMU runs the guest");
  // A destination before and while it loads the stream (post-copy included: QEMU leaves
  // inmigrate only once the device state is in).
  if (runState === "inmigrate")
    return answer("incomplete", "a destination QEMU waiting for, or receiving, the migration stream");
  if (o.incomingMigrationId) {
    // QEMU may have loaded what looks like the whole stream, yet the relay never confirmed
    // it (the source's agent died before the stream's end-to-end check arrived): the copy
    // is not trusted, and the source, which sent everything, still holds the VM.
    if (o.incomingRelayFailure)
      return answer(
        "incomplete",
        `the DWCP relay failed before it verified the whole VM (${o.incomingRelayFailure})`,
      );
    // A destination that left inmigrate: it holds the whole VM only once its incoming
    // migration completed (post-copy would still fetch pages from the source).
    if (migrationStatus === "completed")
      return answer("paused", "the incoming migration completed; the VM waits paused to be resumed");
    return answer(
      "incomplete",
      `a destination QEMU that has not received the whole VM (${runState}, migration ${migrationStatus})`,
    );
  }
  if (runState === "postmigrate")
    return answer("paused", "the outgoing migration completed; this copy holds the VM, paused");
  // A source stopped at its switch-over, or a VM stopped otherwise: QEMU holds it, paused.
  return answer(
    "paused",
    migrationStatus === "completed"
      ? "the migration completed; this copy holds the VM, paused"
      : `QEMU holds the VM, stopped (${runState}, migration ${migrationStatus})`,
  );
}
