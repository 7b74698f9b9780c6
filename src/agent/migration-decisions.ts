/**
 * The agent's migration decisions, pure so each case has a unit test: what status to
 * report for an outgoing migration, what a switch-over or cancel must do given QEMU's
 * migration status, when an incoming migration has loaded the VM, and when QEMU's own
 * transport is used. MigrationService (migration-service.ts) reads QEMU, asks these, and
 * runs the QMP commands they name.
 *
 * The agent keeps no migration state of its own beyond caches: the phase of a migration is
 * QEMU's migration status, read each time, so a restarted agent reports and continues
 * exactly where QEMU is.
 */
import type { AgentOutgoingStatus } from "../api/types/agent.js";
import type { MirrorProgress } from "../compute/qemu/block-mirror.js";
import { downtimeBreakdown, type SwitchoverTimes } from "../compute/qemu/downtime-breakdown.js";
import type { MigrationProgress } from "../compute/qemu/migration.js";
import { NovaError } from "../lib/errors.js";
import type { OutgoingStats, TransportDecision } from "./dwcp-transport.js";

/** The block job and NBD export names of a migration (derived, so nothing needs storing). */
export function migrationNames(migrationId: string): { jobId: string; exportName: string } {
  const short = migrationId.replace(/-/g, "").slice(0, 12);
  return { jobId: `mig-${short}`, exportName: `mig-${short}` };
}

/** The memory part of the outgoing status, from QEMU's progress and the switch-over events. */
export function memoryView(
  p: MigrationProgress,
  times?: SwitchoverTimes,
): NonNullable<AgentOutgoingStatus["memory"]> {
  const view: NonNullable<AgentOutgoingStatus["memory"]> = {
    status: p.status,
    totalBytes: p.totalBytes,
    transferredBytes: p.transferredBytes,
    remainingBytes: p.remainingBytes,
    pass: p.pass,
    pagesPerSecond: p.pagesPerSecond,
    dirtyBytesPerSecond: p.dirtyBytesPerSecond,
    mbps: p.mbps,
  };
  if (p.expectedDowntimeMs !== undefined) view.expectedDowntimeMs = p.expectedDowntimeMs;
  if (p.downtimeMs !== undefined) view.downtimeMs = p.downtimeMs;
  const breakdown = times && downtimeBreakdown(times, p.downtimeMs);
  if (breakdown) view.downtimeBreakdown = breakdown;
  // QEMU's figure ends at `completed`, so it started that long before (QEMU's wall clock).
  if (times?.completedAt !== undefined && p.downtimeMs !== undefined)
    view.stoppedAt = Math.round(times.completedAt - p.downtimeMs);
  if (p.totalTimeMs !== undefined) view.totalTimeMs = p.totalTimeMs;
  if (p.cpuThrottlePercent !== undefined) view.cpuThrottlePercentage = p.cpuThrottlePercent;
  if (p.errorDesc !== undefined) view.errorDesc = p.errorDesc;
  return view;
}

/** What the source read from QEMU and kept about one outgoing migration. */
export interface OutgoingObservation {
  migrationId: string;
  /** QEMU's run state. */
  vmStatus: string;
  mirror: MirrorProgress | undefined;
  memory: MigrationProgress;
  /** The migration whose memory transfer this agent started for the VM (vm.json). */
  startedMigrationId: string | undefined;
  times: SwitchoverTimes | undefined;
  decision: TransportDecision | undefined;
  relay: OutgoingStats | null | undefined;
}

/**
 * The outgoing status to report. QEMU's migration status does not say which migration it
 * describes, so it counts only when this agent started `migrationId`'s memory transfer.
 */
export function outgoingView(o: OutgoingObservation): AgentOutgoingStatus {
  const { jobId } = migrationNames(o.migrationId);
  const ours = o.startedMigrationId === o.migrationId && o.memory.status !== "none";
  const { decision, relay } = o;
  return {
    vmStatus: o.vmStatus,
    mirror: o.mirror ? { jobId, ...o.mirror } : null,
    memory: ours ? memoryView(o.memory, o.times) : null,
    ...(decision
      ? {
          transport: {
            chosen: decision.chosen,
            mode: decision.mode,
            reason: decision.reason,
            ...(relay
              ? {
                  relay: {
                    logicalBytes: relay.logicalBytes,
                    wireBytes: relay.wireBytes,
                    ratio: relay.ratio,
                    streams: relay.streams,
                    mode: relay.mode,
                    pages: relay.pages,
                    disk: relay.disk,
                    ...(relay.startedFrom ? { startedFrom: relay.startedFrom } : {}),
                  },
                }
              : {}),
          },
        }
      : {}),
  };
}

/**
 * Switch-over, given the reported memory status: at "pre-switchover" finish the mirror
 * (when one runs) and let QEMU continue; once QEMU is past it ("device", "completed") there
 * is nothing left to do; anything else is too early (or too late) and refused.
 */
export function switchoverPlan(
  memoryStatus: string | undefined,
  hasMirror: boolean,
): { finishMirror: boolean; continue: boolean } {
  if (memoryStatus === "pre-switchover") return { finishMirror: hasMirror, continue: true };
  if (memoryStatus === "completed" || memoryStatus === "device")
    return { finishMirror: false, continue: false };
  throw new NovaError(
    "NOVA_ILLEGAL_STATE",
    `cannot switch over: the migration is ${memoryStatus ?? "not started"}`,
  );
}

/** What cancelling an outgoing migration does on the source. */
export type CancelPlan =
  /** The transfer completed and the target still may run the VM: refuse. */
  | { kind: "refuse" }
  /** The transfer completed and the target's QEMU is gone: take the VM back. */
  | { kind: "resume-after-switchover"; cancelMirror: boolean }
  /** Before completion: stop what runs; the VM keeps running here. */
  | { kind: "abandon"; cancelMemory: boolean; cancelMirror: boolean };

/**
 * Cancel, given the reported memory status. After QEMU completed the transfer the VM's
 * latest state is on the target, so the source resumes only when the caller says the
 * target's QEMU is gone (never both running).
 */
export function cancelPlan(
  memoryStatus: string | undefined,
  hasMirror: boolean,
  targetGone: boolean,
): CancelPlan {
  if (memoryStatus === "completed")
    return targetGone ? { kind: "resume-after-switchover", cancelMirror: hasMirror } : { kind: "refuse" };
  return {
    kind: "abandon",
    cancelMemory: Boolean(memoryStatus) && memoryStatus !== "failed" && memoryStatus !== "cancelled",
    cancelMirror: hasMirror,
  };
}

/**
 * Destination: whether the migration stream has delivered what the VM needs to run
 * ("completed", or "postcopy-active": the rest arrives on demand). Only then is the run
 * state worth reading (incomingLoaded).
 */
export function incomingStreamReady(migrationStatus: string): boolean {
  return migrationStatus === "completed" || migrationStatus === "postcopy-active";
}

/**
 * Destination: whether the incoming QEMU finished loading the VM's state, so it may be
 * resumed. The run state must have left "inmigrate" (to "paused": autostart is off): the
 * migration status alone is not enough, as in post-copy it reads "postcopy-active" before
 * the device state is in, and resuming then runs the guest on half-loaded state.
 */
export function incomingLoaded(migrationStatus: string, runState: string): boolean {
  return incomingStreamReady(migrationStatus) && runState !== "inmigrate";
}

/**
 * Destination: where QEMU's migration and NBD listeners go. Behind the DWCP relay (on
 * loopback) when DWCP was requested, and always for a migration from another cluster
 * (`crossCluster`: prepared with its CA): QEMU's own TLS trusts this cluster's CA only, so
 * across clusters DWCP is the one transport, and "qemu" or an agent without DWCP is
 * refused (NOVA_UNPROCESSABLE) before anything starts.
 */
export function incomingListeners(o: {
  transport: "auto" | "qemu" | "dwcp" | undefined;
  crossCluster: boolean;
  /** This agent offers DWCP. */
  dwcp: boolean;
}): { behindRelay: boolean } {
  if (!o.crossCluster) return { behindRelay: o.dwcp && o.transport === "dwcp" };
  if (o.transport === "qemu")
    throw new NovaError(
      "NOVA_UNPROCESSABLE",
      "QEMU's own transport stays inside a cluster: a migration from another cluster (peerCaPem) must use DWCP",
    );
  if (!o.dwcp)
    throw new NovaError(
      "NOVA_UNPROCESSABLE",
      "A migration from another cluster (peerCaPem) needs DWCP, and this agent does not offer it",
    );
  return { behindRelay: true };
}

/** Post-copy is started only from a running pre-copy; any other status makes the step a no-op. */
export function shouldStartPostcopy(memoryStatus: string | undefined): boolean {
  return memoryStatus === "active";
}
