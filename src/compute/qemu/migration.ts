/**
 * The QEMU side of live migration (memory): destination listening, source start with
 * tuning, progress, the switch-over pause, post-copy, cancel, and waiting with typed
 * errors. Disk is block-mirror.ts. The control plane drives the sequence; this module
 * knows nothing about hosts or the API.
 *
 * Sequence for hosts that share no storage (what test/qemu-migration.slow.test.ts runs):
 *
 *   destination: QemuProcess.launch({...sourceConfig, diskPath: newOverlay, runDir, incoming: "defer"})
 *                startIncoming(dst, {host, port}, tuning)        stop (autostart off) + caps + migrate-incoming
 *                startNbdExport(dst, {..., nodeName: await diskNodeName(dst)})
 *   source:      startMirror(src, {jobId, sourceNode: "drive-vda", nbd}) → waitMirrorReady(src, jobId)
 *                startOutgoing(src, uri, tuning, { pauseBeforeSwitchover: true })
 *                waitForMigration(src) → status "pre-switchover": vCPUs stopped, disks still active
 *                finishMirror(src, jobId)                         final sync, target consistent
 *                continueSwitchover(src) → waitForMigration(src) → "completed" (downtimeMs)
 *   destination: stopNbdExport(dst, exportName) → cont(dst)       the VM runs at the destination
 *   source:      quit
 *
 * A failure before "completed": cancelOutgoing(src) (if still in progress), cancelMirror(src),
 * kill the destination QEMU. The source VM keeps running: QEMU resumes the vCPUs it
 * stopped for the switch-over itself when a migration fails or is cancelled.
 * A failure after "completed" but before `cont(dst)` succeeded: kill the destination QEMU
 * first, then resumeSourceAfterSwitchover(src). Never both running: the source is only
 * resumed once the destination is gone, and the destination only runs on our `cont`.
 *
 * Why pause-before-switchover: without it QEMU stops the source vCPUs and, in the same
 * step, sends the device state and inactivates the source's disks. A guest write that the
 * mirror had not copied yet at that moment could then never be copied (the mirror target
 * is inactive too). Pausing at "pre-switchover" lets the mirror finish while the vCPUs are
 * stopped and the disks are still active; the extra time counts into the downtime QEMU
 * reports, so it is measured, not hidden.
 *
 * Why the destination does not autostart: startIncoming sends `stop` while QEMU is in
 * "inmigrate", which turns autostart off (as `-S` would), so after the migration the
 * destination is paused and starts only on our `cont` — after the disk export is closed,
 * and only if the control plane still wants the switch-over.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { AgentMigrationTuning } from "../../api/types/agent.js";
import { MIGRATION_OPTION_DEFAULTS } from "../../api/types/migrations.js";
import { NovaError } from "../../lib/errors.js";
import {
  cont,
  migrate,
  migrateCancel,
  migrateContinue,
  migrateIncoming,
  migrateSetCapabilities,
  migrateSetParameters,
  migrateStartPostcopy,
  queryMigrate,
  queryStatus,
  stop,
} from "./commands.js";
import { pollQmp } from "./migration-poll.js";
import {
  formatMiB,
  IN_PROGRESS_STATUSES,
  type MigrationProgress,
  type MigrationStatus,
  POSTCOPY_STATUSES,
  parseQueryMigrate,
} from "./migration-progress.js";
import { type QemuTlsPeer, tlsAuthzId } from "./qemu-tls.js";
import type { QmpClient } from "./qmp.js";

export type { MigrationProgress, MigrationStatus } from "./migration-progress.js";
export { MIGRATION_STATUSES, parseQueryMigrate } from "./migration-progress.js";

/**
 * The knobs of a memory migration: the agent wire type itself (api/types/agent.ts), so
 * what the server sends is what QEMU gets, with no converter in between. Unset
 * maxBandwidthBytesPerSec means UNLIMITED_BANDWIDTH (QEMU's own default is 128 MiB/s);
 * unset multifd means off.
 */
export type MigrationTuning = AgentMigrationTuning;

/** "No cap" for links we own: QEMU needs a number, and 16 GiB/s is above any NIC we drive. */
export const UNLIMITED_BANDWIDTH = 16 * 1024 * 1024 * 1024;

/** Defaults for a migration inside a datacenter (the user-facing option defaults). */
export const DEFAULT_TUNING = {
  downtimeLimitMs: MIGRATION_OPTION_DEFAULTS.downtimeLimitMs,
  maxBandwidthBytesPerSec: UNLIMITED_BANDWIDTH,
  autoConverge: MIGRATION_OPTION_DEFAULTS.autoConverge,
  postcopy: MIGRATION_OPTION_DEFAULTS.postcopy,
} as const satisfies MigrationTuning;

/** QEMU's upper bound for downtime-limit (2000 s). */
const MAX_DOWNTIME_LIMIT_MS = 2_000_000;

/** Why waitForMigration (or another migration wait) gave up. */
export type MigrationFailureReason =
  /** QEMU reported status "failed"; the source keeps the VM. */
  | "failed"
  /** The migration was cancelled (by us or someone else); the source keeps the VM. */
  | "cancelled"
  /** Post-copy lost its connection: neither side has the whole VM. */
  | "postcopy-paused"
  /** The wait's time limit passed; the migration itself goes on until cancelled. */
  | "timeout"
  /** The caller's AbortSignal fired; the migration itself goes on until cancelled. */
  | "aborted"
  /** The source's QMP session closed (QEMU died or the agent closed it). */
  | "source-lost";

/** A migration that did not reach the awaited state; `reason` says why. */
export class MigrationError extends NovaError {
  /** Why the migration or the wait ended. */
  readonly reason: MigrationFailureReason;
  /** The last progress seen, when one was read. */
  readonly progress: MigrationProgress | undefined;

  constructor(
    reason: MigrationFailureReason,
    message: string,
    opts: { progress?: MigrationProgress | undefined; cause?: unknown } = {},
  ) {
    const code =
      reason === "timeout"
        ? "NOVA_TIMEOUT"
        : reason === "source-lost"
          ? "NOVA_QMP_PROTOCOL"
          : reason === "failed" || reason === "postcopy-paused"
            ? "NOVA_QEMU_ERROR"
            : "NOVA_ILLEGAL_STATE";
    const details: Record<string, unknown> = { reason };
    if (opts.progress) {
      details.migrationStatus = opts.progress.status;
      if (opts.progress.errorDesc !== undefined) details.errorDesc = opts.progress.errorDesc;
    }
    super(code, message, {
      details,
      ...(opts.cause === undefined ? {} : { cause: opts.cause }),
      // The source still runs the VM after these, so trying again can work.
      retryable: reason === "failed" || reason === "timeout" || reason === "source-lost",
    });
    this.name = "MigrationError";
    this.reason = reason;
    this.progress = opts.progress;
  }
}

function invalid(message: string, field: string, value: unknown): NovaError {
  return new NovaError("NOVA_UNPROCESSABLE", `Invalid migration tuning: ${message}`, {
    details: { field, value },
  });
}

/** The parameters that can change while a migration runs (see setLiveTuning). */
export type LiveTuning = Partial<Pick<MigrationTuning, "downtimeLimitMs" | "maxBandwidthBytesPerSec">>;

function validateLiveTuning(t: LiveTuning): void {
  const d = t.downtimeLimitMs;
  if (d !== undefined && (!Number.isSafeInteger(d) || d < 1 || d > MAX_DOWNTIME_LIMIT_MS)) {
    throw invalid(
      `downtimeLimitMs must be an integer from 1 to ${MAX_DOWNTIME_LIMIT_MS}, got ${d}`,
      "downtimeLimitMs",
      d,
    );
  }
  const b = t.maxBandwidthBytesPerSec;
  if (b !== undefined && (!Number.isSafeInteger(b) || b < 1)) {
    throw invalid(
      `maxBandwidthBytesPerSec must be a positive integer, got ${b}`,
      "maxBandwidthBytesPerSec",
      b,
    );
  }
}

/** Throws NOVA_UNPROCESSABLE naming the first invalid field of `t`. */
export function validateTuning(t: MigrationTuning): void {
  if (t.downtimeLimitMs === undefined)
    throw invalid("downtimeLimitMs is required", "downtimeLimitMs", undefined);
  validateLiveTuning(t);
  if (typeof t.autoConverge !== "boolean") {
    throw invalid("autoConverge must be a boolean", "autoConverge", t.autoConverge);
  }
  if (typeof t.postcopy !== "boolean") throw invalid("postcopy must be a boolean", "postcopy", t.postcopy);
  if (t.multifd) {
    const { channels, compression } = t.multifd;
    if (!Number.isSafeInteger(channels) || channels < 1 || channels > 255)
      throw invalid(
        `multifd channels must be an integer from 1 to 255, got ${channels}`,
        "multifd",
        t.multifd,
      );
    if (compression !== "none" && compression !== "zstd")
      throw invalid(`multifd compression must be none or zstd, got ${compression}`, "multifd", t.multifd);
    if (t.postcopy)
      throw invalid("multifd cannot be combined with post-copy (QEMU 7.2)", "multifd", t.multifd);
  }
}

/** Parameters for multifd, which both sides must set alike (the capability goes with the others). */
async function applyMultifd(qmp: QmpClient, tuning: MigrationTuning): Promise<void> {
  if (!tuning.multifd) return;
  await migrateSetParameters(qmp, {
    "multifd-channels": tuning.multifd.channels,
    "multifd-compression": tuning.multifd.compression,
  });
}

/** The QEMU URI for a TCP endpoint; IPv6 literals get brackets. */
export function tcpUri(host: string, port: number): string {
  if (typeof host !== "string" || host.length === 0 || /[\s/]/.test(host)) {
    throw new NovaError("NOVA_UNPROCESSABLE", `Invalid migration host "${host}"`, { details: { host } });
  }
  if (!Number.isSafeInteger(port) || port < 1 || port > 65535) {
    throw new NovaError("NOVA_UNPROCESSABLE", `Invalid migration port ${port}: must be 1 to 65535`, {
      details: { port },
    });
  }
  const h = host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
  return `tcp:${h}:${port}`;
}

/**
 * Destination: prepares a QEMU started with `incoming: "defer"` and starts listening on
 * `listen`. Turns autostart off (the VM stays paused after the migration until `cont`),
 * and sets the capabilities that must match the source (postcopy-ram) plus events.
 * With `listen.tlsCreds` (a server tls-creds object, qemu-tls.ts) every connection, the
 * multifd channels included, must complete TLS with a client certificate from the CA
 * before QEMU reads a byte of migration stream.
 */
export async function startIncoming(
  qmp: QmpClient,
  listen: { host: string; port: number; tlsCreds?: string },
  tuning: MigrationTuning,
): Promise<void> {
  validateTuning(tuning);
  const uri = tcpUri(listen.host, listen.port);
  const { status } = await queryStatus(qmp);
  if (status !== "inmigrate") {
    throw new NovaError(
      "NOVA_ILLEGAL_STATE",
      `Failed preparing the migration destination: QEMU is "${status}", not "inmigrate" (start it with incoming: "defer")`,
      { details: { status } },
    );
  }
  // In "inmigrate", `stop` only clears autostart; see the module comment.
  await stop(qmp);
  // multifd is always set, on or off: a QEMU that arrived by a multifd migration keeps the
  // capability, and its next migration must not inherit it.
  await migrateSetCapabilities(qmp, {
    events: true,
    "postcopy-ram": tuning.postcopy,
    multifd: Boolean(tuning.multifd),
  });
  await applyMultifd(qmp, tuning);
  // With TLS, the creds' authz list (qemu-tls.ts) keeps scrapers' certificates out; without,
  // tls-authz is left alone (QEMU consults it only with TLS, and the next TLS listen sets it).
  await migrateSetParameters(qmp, {
    "tls-creds": listen.tlsCreds ?? "",
    ...(listen.tlsCreds ? { "tls-authz": tlsAuthzId(listen.tlsCreds) } : {}),
  });
  await migrateIncoming(qmp, uri);
}

/** Options for startOutgoing. */
export interface OutgoingOptions {
  /**
   * Stop at status "pre-switchover" (vCPUs stopped, disks active) until continueSwitchover().
   * Required when a disk mirror runs, so finishMirror() can run at that point.
   * @defaultValue false
   */
  pauseBeforeSwitchover?: boolean;
  /**
   * Start with the switch-over held back (holdSwitchover) until releaseSwitchover():
   * for memory that starts while the disk mirror is still catching up.
   * @defaultValue false
   */
  holdSwitchover?: boolean;
  /**
   * Speak TLS to the destination (memory stream and multifd channels) and check its
   * certificate against `hostname`; unset means plaintext, as for the DWCP relay's
   * loopback endpoint. Set (or cleared) on every start: the parameters outlive a migration.
   */
  tls?: QemuTlsPeer;
}

/**
 * Source: sets capabilities and parameters from `tuning`, then starts migrating to `uri`
 * ("tcp:host:port", see tcpUri). Returns once QEMU accepted the command; follow it with
 * queryMigration / waitForMigration.
 */
export async function startOutgoing(
  qmp: QmpClient,
  uri: string,
  tuning: MigrationTuning,
  opts: OutgoingOptions = {},
): Promise<void> {
  validateTuning(tuning);
  const current = await queryMigration(qmp);
  if (IN_PROGRESS_STATUSES.has(current.status) || POSTCOPY_STATUSES.has(current.status)) {
    throw new NovaError(
      "NOVA_ILLEGAL_STATE",
      `Failed starting the migration: another one is in status "${current.status}"`,
      { details: { migrationStatus: current.status } },
    );
  }
  await migrateSetCapabilities(qmp, {
    events: true,
    "auto-converge": tuning.autoConverge,
    "postcopy-ram": tuning.postcopy,
    "pause-before-switchover": opts.pauseBeforeSwitchover ?? false,
    multifd: Boolean(tuning.multifd),
  });
  await setLiveTuning(qmp, {
    downtimeLimitMs: tuning.downtimeLimitMs,
    maxBandwidthBytesPerSec: tuning.maxBandwidthBytesPerSec ?? UNLIMITED_BANDWIDTH,
  });
  if (opts.holdSwitchover) await holdSwitchover(qmp);
  await applyMultifd(qmp, tuning);
  await migrateSetParameters(qmp, {
    "tls-creds": opts.tls?.creds ?? "",
    "tls-hostname": opts.tls?.hostname ?? "",
  });
  await migrate(qmp, uri);
}

/**
 * Keeps a running pre-copy from stopping the guest: with a downtime limit of 0 QEMU's
 * switch-over threshold (bandwidth × limit) is 0, so it goes on iterating passes and stops
 * only when nothing at all is left to send (an idle guest may get there; the caller must
 * cope). Works on 7.2 and 10.0; releaseSwitchover() restores the real limit.
 */
export async function holdSwitchover(qmp: QmpClient): Promise<void> {
  await migrateSetParameters(qmp, { "downtime-limit": 0 });
}

/** Ends holdSwitchover(): QEMU may switch over within `downtimeLimitMs` again. */
export async function releaseSwitchover(qmp: QmpClient, downtimeLimitMs: number): Promise<void> {
  await setLiveTuning(qmp, { downtimeLimitMs });
}

/**
 * Changes the downtime limit and/or the bandwidth cap; works before and during a
 * migration (e.g. to let one that does not converge accept a longer pause).
 */
export async function setLiveTuning(qmp: QmpClient, t: LiveTuning): Promise<void> {
  validateLiveTuning(t);
  await migrateSetParameters(qmp, {
    ...(t.downtimeLimitMs === undefined ? {} : { "downtime-limit": t.downtimeLimitMs }),
    ...(t.maxBandwidthBytesPerSec === undefined ? {} : { "max-bandwidth": t.maxBandwidthBytesPerSec }),
  });
}

/** Reads the migration's state and statistics (see parseQueryMigrate). */
export async function queryMigration(qmp: QmpClient): Promise<MigrationProgress> {
  return parseQueryMigrate(await queryMigrate(qmp));
}

/** Source at "pre-switchover": lets the migration send the device state and complete. */
export async function continueSwitchover(qmp: QmpClient): Promise<void> {
  await migrateContinue(qmp, "pre-switchover");
}

/**
 * Switches a pre-copy migration (status active, postcopy-ram set on both sides) to
 * post-copy: the destination starts running and pulls the pages it lacks. From here on
 * the migration cannot be cancelled, and a broken connection loses the VM.
 */
export async function startPostcopy(qmp: QmpClient): Promise<void> {
  const p = await queryMigration(qmp);
  if (p.status !== "active") {
    throw new NovaError(
      "NOVA_ILLEGAL_STATE",
      `Failed starting post-copy: the migration is "${p.status}", not "active"`,
      { details: { migrationStatus: p.status } },
    );
  }
  await migrateStartPostcopy(qmp);
}

/** Options for cancelOutgoing. */
export interface CancelOptions {
  /** Bound on QEMU reaching "cancelled". @defaultValue 30000 */
  timeoutMs?: number;
  /**
   * `cont` the source when the migration left its vCPUs stopped (status "postmigrate" or
   * "finish-migrate"). QEMU resumes them itself when the VM was running at the start of
   * the migration, so this only matters for a VM that was paused then. @defaultValue true
   */
  resume?: boolean;
}

const TERMINAL_FOR_CANCEL = new Set(["cancelled", "failed", "completed", "none"]);

/**
 * Source: cancels the outgoing migration and waits until QEMU has rolled back; resolves
 * with the final progress. Afterwards the source VM runs (see CancelOptions.resume).
 * Refuses (NOVA_ILLEGAL_STATE) once switch-over happened: after "completed" the
 * destination holds the VM's state (paused; the caller must kill it and `cont` the
 * source), and in post-copy the destination already runs it.
 */
export async function cancelOutgoing(qmp: QmpClient, opts: CancelOptions = {}): Promise<MigrationProgress> {
  const before = await queryMigration(qmp);
  if (before.status === "completed" || POSTCOPY_STATUSES.has(before.status)) {
    throw new NovaError(
      "NOVA_ILLEGAL_STATE",
      `Failed cancelling the migration: it is already "${before.status}" (the switch-over happened)`,
      { details: { migrationStatus: before.status } },
    );
  }
  if (IN_PROGRESS_STATUSES.has(before.status)) await migrateCancel(qmp);
  const final = await pollQmp(
    qmp,
    async () => {
      const p = await queryMigration(qmp);
      return TERMINAL_FOR_CANCEL.has(p.status) ? p : undefined;
    },
    {
      timeoutMs: opts.timeoutMs ?? 30_000,
      pollMs: 50,
      what: "the migration to be cancelled",
      wakeOn: (ev) => ev.event === "MIGRATION",
    },
  );
  if (final.status === "completed") {
    // migrate_cancel raced with the end of the migration and lost.
    throw new NovaError(
      "NOVA_ILLEGAL_STATE",
      "Failed cancelling the migration: it completed before the cancel took effect",
      { details: { migrationStatus: final.status } },
    );
  }
  if (opts.resume ?? true) {
    const { status, running } = await queryStatus(qmp);
    if (!running && (status === "postmigrate" || status === "finish-migrate")) await cont(qmp);
  }
  return final;
}

/**
 * Source, to undo a switch-over that completed but whose destination could not be
 * started: resumes the source VM (`cont` also re-activates the disks QEMU inactivated at
 * completion). Call it only once the destination QEMU is gone, or the VM runs twice.
 * Refuses unless the migration completed and the source sits in "postmigrate" (or runs
 * already: then there is nothing to do).
 */
export async function resumeSourceAfterSwitchover(qmp: QmpClient): Promise<void> {
  const p = await queryMigration(qmp);
  const vm = await queryStatus(qmp);
  // Already resumed (a repeated undo, or across clusters the hand-off's own resume): done.
  if (p.status === "completed" && vm.status === "running") return;
  if (p.status !== "completed" || vm.status !== "postmigrate") {
    throw new NovaError(
      "NOVA_ILLEGAL_STATE",
      `Failed resuming the source: expected a completed migration and a "postmigrate" VM, found migration "${p.status}" and VM "${vm.status}"`,
      { details: { migrationStatus: p.status, vmStatus: vm.status } },
    );
  }
  await cont(qmp);
}

/** How long finalStatistics waits for QEMU to fill in total-time and downtime. */
const FINAL_STATS_WAIT_MS = 2_000;

/**
 * QEMU 7.2 sets status "completed" a moment before it computes total-time and downtime
 * (they read 0 in between — the MIGRATION event makes us look in exactly that window), so
 * re-read until they are filled in, briefly.
 */
async function finalStatistics(qmp: QmpClient, first: MigrationProgress): Promise<MigrationProgress> {
  let p = first;
  const deadline = Date.now() + FINAL_STATS_WAIT_MS;
  while (!((p.totalTimeMs ?? 0) > 0) && Date.now() < deadline) {
    await sleep(10);
    p = await queryMigration(qmp);
  }
  return p;
}

/** Options for waitForMigration. */
export interface WaitMigrationOptions {
  /** Give up after this long (MigrationError "timeout"; the migration goes on). */
  timeoutMs: number;
  /** Called with every progress read (each poll and each MIGRATION event). */
  onProgress?: (p: MigrationProgress) => void;
  /** Stops waiting (MigrationError "aborted"; the migration goes on). */
  signal?: AbortSignal;
  /** Poll interval. @defaultValue 500 */
  pollMs?: number;
  /**
   * Statuses that end the wait successfully besides "completed".
   * @defaultValue ["pre-switchover"]
   */
  resolveOn?: readonly MigrationStatus[];
}

/**
 * Waits for the migration to complete (or reach one of `resolveOn`) and resolves with the
 * progress at that point. Rejects with a MigrationError: "failed" (with QEMU's
 * error-desc), "cancelled", "postcopy-paused", "timeout", "aborted" or "source-lost".
 */
export async function waitForMigration(
  qmp: QmpClient,
  opts: WaitMigrationOptions,
): Promise<MigrationProgress> {
  const resolveOn = new Set<string>(["completed", ...(opts.resolveOn ?? ["pre-switchover"])]);
  let last: MigrationProgress | undefined;
  try {
    return await pollQmp(
      qmp,
      async () => {
        let p = await queryMigration(qmp);
        if (p.status === "completed") p = await finalStatistics(qmp, p);
        last = p;
        opts.onProgress?.(p);
        if (resolveOn.has(p.status)) return p;
        if (p.status === "failed") {
          throw new MigrationError("failed", `Migration failed: ${p.errorDesc ?? "QEMU gave no reason"}`, {
            progress: p,
          });
        }
        if (p.status === "cancelled") {
          throw new MigrationError("cancelled", "Migration was cancelled; the source keeps the VM", {
            progress: p,
          });
        }
        if (p.status === "postcopy-paused") {
          throw new MigrationError(
            "postcopy-paused",
            "Post-copy migration lost its connection: the VM's memory is split between the hosts",
            { progress: p },
          );
        }
        return undefined;
      },
      {
        timeoutMs: opts.timeoutMs,
        pollMs: opts.pollMs ?? 500,
        what: "the migration",
        signal: opts.signal,
        wakeOn: (ev) => ev.event === "MIGRATION",
      },
    );
  } catch (err) {
    if (err instanceof MigrationError) throw err;
    if (err instanceof NovaError && err.details.timedOut === true) {
      const where = last
        ? ` (status ${last.status}, pass ${last.pass}, ${formatMiB(last.remainingBytes)} remaining)`
        : "";
      throw new MigrationError("timeout", `Migration did not finish within ${opts.timeoutMs} ms${where}`, {
        progress: last,
        cause: err,
      });
    }
    if (err instanceof NovaError && err.details.aborted === true) {
      throw new MigrationError("aborted", "Stopped waiting for the migration: aborted by the caller", {
        progress: last,
        cause: err.cause,
      });
    }
    if (err instanceof NovaError && err.code === "NOVA_QMP_PROTOCOL") {
      throw new MigrationError("source-lost", `Lost the source QEMU during the migration: ${err.message}`, {
        progress: last,
        cause: err,
      });
    }
    throw err;
  }
}
