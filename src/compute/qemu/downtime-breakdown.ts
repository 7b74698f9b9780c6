/**
 * Where a pre-copy migration's downtime went, from the source QEMU's MIGRATION events and
 * the downtime it reports. QEMU counts downtime from the moment it decides to stop the
 * vCPUs; with `pause-before-switchover` the stream then waits at `pre-switchover` while
 * the agent finishes the disk mirror, goes on to `device` (final RAM and device state)
 * and ends at `completed`. Only the first step has no event of its own, so it is what
 * remains of QEMU's figure.
 */
import type { QmpEvent } from "./qmp-wire.js";

/** The three parts, in milliseconds; they add up to QEMU's downtime. */
export interface DowntimeBreakdown {
  /** Stopping the vCPUs: QEMU drains and flushes every disk (a mirror's target included). */
  stopMs: number;
  /** At pre-switchover: finishing the disk mirror before the stream goes on. */
  mirrorFinishMs: number;
  /** The last dirty pages and the device state, until QEMU completed. */
  finalMs: number;
}

/** Event times (ms, from QEMU's event timestamps) of one outgoing migration. */
export interface SwitchoverTimes {
  preSwitchoverAt?: number;
  deviceAt?: number;
  completedAt?: number;
}

/** Records the switch-over statuses of a MIGRATION event into `times`. */
export function noteMigrationEvent(times: SwitchoverTimes, ev: QmpEvent): void {
  if (ev.event !== "MIGRATION" || !ev.timestamp) return;
  const at = ev.timestamp.seconds * 1000 + ev.timestamp.microseconds / 1000;
  const status = ev.data?.status;
  if (status === "pre-switchover") times.preSwitchoverAt = at;
  else if (status === "device") times.deviceAt = at;
  else if (status === "completed") times.completedAt = at;
}

/**
 * The breakdown, or undefined unless all three events were seen and QEMU reported its
 * downtime (post-copy and migrations without pause-before-switchover have none).
 */
export function downtimeBreakdown(
  times: SwitchoverTimes,
  downtimeMs: number | undefined,
): DowntimeBreakdown | undefined {
  const { preSwitchoverAt: pre, deviceAt: device, completedAt: done } = times;
  if (downtimeMs === undefined || pre === undefined || device === undefined || done === undefined)
    return undefined;
  if (!(pre <= device && device <= done)) return undefined;
  const mirrorFinishMs = Math.round(device - pre);
  const finalMs = Math.round(done - device);
  // QEMU's own clock and the event timestamps differ by a millisecond or so.
  const stopMs = Math.max(0, downtimeMs - mirrorFinishMs - finalMs);
  return { stopMs, mirrorFinishMs, finalMs };
}
