/**
 * QEMU's migration states and the parsing of query-migrate into MigrationProgress. Pure.
 *
 * Outgoing (source) state machine, as QEMU 7.2 runs it:
 *
 *   none ─migrate─▶ setup ─▶ active ─(converged: vCPUs stop)─┬─▶ completed
 *                              │                             └─(pause-before-switchover)─▶ pre-switchover
 *                              │                                  ─migrate-continue─▶ device ─▶ completed
 *                              └─migrate-start-postcopy─▶ [pre-switchover ─▶ device ─▶] postcopy-active ─▶ completed
 *   setup/active/pre-switchover/device ─migrate_cancel─▶ cancelling ─▶ cancelled  (source vCPUs resume)
 *   setup/active/pre-switchover/device ─error─▶ failed                            (source vCPUs resume)
 *   postcopy-active ─error─▶ postcopy-paused  (the VM's state is split between both hosts)
 *
 * The incoming side goes none ─migrate-incoming─▶ setup ─▶ active [─▶ postcopy-active] ─▶
 * completed | failed.
 */

/** Every MigrationStatus QEMU 7.2 reports, with what it means for the VM. */
export const MIGRATION_STATUSES = {
  none: "no migration has run in this QEMU",
  setup: "connecting and preparing",
  active: "pre-copy: RAM is copied while the guest runs",
  "pre-switchover": "source vCPUs stopped, disks still active; waiting for migrate-continue",
  device: "source vCPUs stopped; device state is being sent",
  "postcopy-active": "the destination runs the guest and pulls the remaining pages",
  "postcopy-paused": "post-copy lost its connection; the guest's memory is split between hosts",
  "postcopy-recover": "post-copy is reconnecting",
  completed: "everything was sent; the destination holds the VM",
  failed: "the migration failed; the source keeps the VM",
  cancelling: "migrate_cancel was asked for",
  cancelled: "the migration was cancelled; the source keeps the VM",
  colo: "COLO fault tolerance (unused by NovaCron)",
  "wait-unplug": "waiting for the guest to unplug failover devices",
} as const;

/** A migration status as QEMU names it. */
export type MigrationStatus = keyof typeof MIGRATION_STATUSES;

/** Statuses in which the source still owns the VM and QEMU is migrating. */
export const IN_PROGRESS_STATUSES: ReadonlySet<string> = new Set([
  "setup",
  "active",
  "pre-switchover",
  "device",
  "cancelling",
  "wait-unplug",
]);

/** Statuses in which the destination already runs the guest (cancel would lose the VM). */
export const POSTCOPY_STATUSES: ReadonlySet<string> = new Set([
  "postcopy-active",
  "postcopy-paused",
  "postcopy-recover",
]);

/** The state and statistics of a migration, from query-migrate. */
export interface MigrationProgress {
  /** QEMU's MigrationStatus ("none" when QEMU reported none). */
  status: string;
  /** Guest RAM size in bytes. */
  totalBytes: number;
  /** Bytes sent so far (all passes, including device state at the end). */
  transferredBytes: number;
  /** RAM bytes still dirty (to be sent). */
  remainingBytes: number;
  /** Dirty-bitmap syncs so far (dirty-sync-count): 1 during the first pass. */
  pass: number;
  /** Pages sent per second, last measurement. */
  pagesPerSecond: number;
  /** Pages the guest dirties per second (dirty-pages-rate); 0 until the second pass. */
  dirtyPagesRate: number;
  /** dirtyPagesRate × page size. */
  dirtyBytesPerSecond: number;
  /** Throughput in megabits per second, last measurement. */
  mbps: number;
  /** Page size the page counters use. */
  pageSizeBytes: number;
  /** QEMU's estimate of the downtime if it switched over now (while active). */
  expectedDowntimeMs?: number;
  /** The measured downtime (from vCPU stop on the source until the end), once completed. */
  downtimeMs?: number;
  /** Time since the migration started, or its total time once it ended. */
  totalTimeMs?: number;
  /** Time spent in setup. */
  setupTimeMs?: number;
  /** Current auto-converge vCPU throttle (0–99), when QEMU throttles. */
  cpuThrottlePercent?: number;
  /** QEMU's reason, when status is failed. */
  errorDesc?: string;
}

function num(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}

/**
 * Turns a query-migrate reply into MigrationProgress. Tolerates every member missing (QEMU
 * sends `{}` before any migration and omits `ram` in setup, `downtime` before completion,
 * `expected-downtime` after it) and anything that is not a finite number.
 */
export function parseQueryMigrate(reply: unknown): MigrationProgress {
  const r = (typeof reply === "object" && reply !== null ? reply : {}) as Record<string, unknown>;
  const ramRaw = r.ram;
  const ram = (typeof ramRaw === "object" && ramRaw !== null ? ramRaw : {}) as Record<string, unknown>;
  const pageSizeBytes = num(ram["page-size"]) ?? 4096;
  const dirtyPagesRate = num(ram["dirty-pages-rate"]) ?? 0;
  const progress: MigrationProgress = {
    status: typeof r.status === "string" && r.status.length > 0 ? r.status : "none",
    totalBytes: num(ram.total) ?? 0,
    transferredBytes: num(ram.transferred) ?? 0,
    remainingBytes: num(ram.remaining) ?? 0,
    pass: num(ram["dirty-sync-count"]) ?? 0,
    pagesPerSecond: num(ram["pages-per-second"]) ?? 0,
    dirtyPagesRate,
    dirtyBytesPerSecond: dirtyPagesRate * pageSizeBytes,
    mbps: num(ram.mbps) ?? 0,
    pageSizeBytes,
  };
  const optional: Array<[keyof MigrationProgress, string]> = [
    ["expectedDowntimeMs", "expected-downtime"],
    ["downtimeMs", "downtime"],
    ["totalTimeMs", "total-time"],
    ["setupTimeMs", "setup-time"],
    ["cpuThrottlePercent", "cpu-throttle-percentage"],
  ];
  for (const [field, key] of optional) {
    const value = num(r[key]);
    if (value !== undefined) (progress as unknown as Record<string, number>)[field] = value;
  }
  if (typeof r["error-desc"] === "string") progress.errorDesc = r["error-desc"];
  return progress;
}

/** "12.3 MiB" for log and error messages. */
export function formatMiB(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}
