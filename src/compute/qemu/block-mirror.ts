/**
 * The disk half of a live migration between hosts that share no storage, libvirt's way:
 * the destination QEMU (started with `incoming: "defer"` on a new, empty qcow2 overlay
 * over the same base image) exports its disk's format node over NBD, writable; the source
 * adds an NBD client node for that export and runs `blockdev-mirror sync=top` from its
 * disk into it. sync=top copies only what the source's overlay holds; everything else
 * reads through to the base image, which both hosts hold byte for byte (same digest), so
 * the destination's overlay ends up equal to the source's as the guest sees it.
 *
 *   destination: diskNodeName → startNbdExport (nbd-server-start + block-export-add writable)
 *   source:      startMirror (blockdev-add nbd + blockdev-mirror sync=top, auto-dismiss off)
 *                waitMirrorReady (job "ready": in sync, guest writes keep being mirrored)
 *                … memory migration up to "pre-switchover" (source vCPUs stopped) …
 *                finishMirror (block-job-cancel on the ready job → final sync, job
 *                              concludes without pivot; job-dismiss; blockdev-del target)
 *   destination: stopNbdExport (after the memory migration completed) → cont
 *   abort:       cancelMirror (source; force-cancel, dismiss, remove target) + kill destination
 *
 * Why block-job-cancel and not job-complete in finishMirror: job-complete pivots the
 * source's guest device onto the target, i.e. the source VM would then read and write its
 * disk over NBD on the destination host — if the switch-over then failed, the VM kept at
 * the source would depend on the host it failed to move to. Cancelling a *ready* mirror
 * instead copies what is still dirty and ends with the target as a consistent
 * point-in-time copy while the source keeps its own overlay: the source stays the
 * authority until the destination is started.
 *
 * Auto-dismiss is off so that a job that fails stays visible as "concluded" with its error
 * (instead of vanishing), which every wait here reads from query-jobs.
 */
import { NovaError } from "../../lib/errors.js";
import { Reverter } from "../../lib/revert.js";
import {
  blockdevAddNbd,
  blockdevDel,
  blockdevMirror,
  blockExportAddNbd,
  blockExportDel,
  blockJobCancel,
  type JobInfo,
  jobDismiss,
  nbdServerStart,
  nbdServerStop,
  queryBlock,
  queryBlockExports,
  queryJobs,
  queryNamedBlockNodes,
  queryStatus,
} from "./commands.js";
import { pollQmp } from "./migration-poll.js";
import { type QemuTlsPeer, tlsAuthzId } from "./qemu-tls.js";
import type { QmpClient } from "./qmp.js";

/** Where the destination serves a disk over NBD. */
export interface NbdEndpoint {
  host: string;
  port: number;
  exportName: string;
}

/** The mirror job's state, from query-jobs. */
export interface MirrorProgress {
  /** The job status: running, ready, standby, paused, waiting, pending, concluded… */
  status: string;
  /** True while source and target are in sync (status ready or standby). */
  ready: boolean;
  /** Bytes copied so far. */
  offset: number;
  /** Bytes to copy in total (grows when the guest writes). */
  len: number;
  /** QEMU's error for a concluded job that failed. */
  error?: string;
}

/** QEMU limits node names to 31 characters; "-tgt" is appended to the job id. */
const JOB_ID_RE = /^[A-Za-z][A-Za-z0-9_.-]{0,26}$/;
const EXPORT_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const DEFAULT_JOB_TIMEOUT_MS = 30_000;
/** Job states from which QEMU itself moves on to "concluded" without being asked. */
const ENDING_STATES = new Set(["waiting", "pending", "aborting"]);

function checkJobId(jobId: string): void {
  if (typeof jobId !== "string" || !JOB_ID_RE.test(jobId)) {
    throw new NovaError(
      "NOVA_UNPROCESSABLE",
      `Invalid mirror job id "${jobId}": 1 to 27 letters, digits, '_', '-' or '.', starting with a letter`,
      { details: { jobId } },
    );
  }
}

function checkEndpoint(nbd: { host: string; port: number; exportName: string }): void {
  if (typeof nbd.exportName !== "string" || !EXPORT_NAME_RE.test(nbd.exportName)) {
    throw new NovaError(
      "NOVA_UNPROCESSABLE",
      `Invalid NBD export name "${nbd.exportName}": 1 to 64 letters, digits, '_', '-' or '.'`,
      { details: { exportName: nbd.exportName } },
    );
  }
  if (typeof nbd.host !== "string" || nbd.host.length === 0 || /\s/.test(nbd.host)) {
    throw new NovaError("NOVA_UNPROCESSABLE", `Invalid NBD host "${nbd.host}"`, {
      details: { host: nbd.host },
    });
  }
  if (!Number.isSafeInteger(nbd.port) || nbd.port < 1 || nbd.port > 65535) {
    throw new NovaError("NOVA_UNPROCESSABLE", `Invalid NBD port ${nbd.port}: must be 1 to 65535`, {
      details: { port: nbd.port },
    });
  }
}

/** The node-name of the source-side NBD client node startMirror adds for `jobId`. */
export function mirrorTargetNodeName(jobId: string): string {
  checkJobId(jobId);
  return `${jobId}-tgt`;
}

/**
 * The node-name of a drive's format node: QEMU generates one ("#blockNNN") for a `-drive`
 * without node-name, and block-export-add takes node names only.
 */
export async function diskNodeName(qmp: QmpClient, device = "drive-vda"): Promise<string> {
  const drives = await queryBlock(qmp);
  const drive = drives.find((d) => d.device === device);
  if (!drive?.nodeName) {
    throw new NovaError("NOVA_NOT_FOUND", `QEMU has no drive "${device}" with a medium`, {
      details: { device, drives: drives.map((d) => d.device) },
    });
  }
  return drive.nodeName;
}

/**
 * Destination: starts QEMU's NBD server on host:port and exports `nodeName` writable as
 * `exportName`. Exporting activates the node, which QEMU holds inactive while incoming.
 * One NBD server per QEMU: it must not be running already. With `tlsCreds` (a server
 * tls-creds object, qemu-tls.ts) a client must complete TLS with a certificate from the
 * CA before it can name an export.
 */
export async function startNbdExport(
  qmp: QmpClient,
  opts: { host: string; port: number; exportName: string; nodeName: string; tlsCreds?: string },
): Promise<void> {
  checkEndpoint(opts);
  const revert = new Reverter();
  try {
    await nbdServerStart(qmp, {
      host: opts.host,
      port: opts.port,
      // The creds' authz list (qemu-tls.ts) keeps scrapers' certificates out.
      ...(opts.tlsCreds ? { tlsCreds: opts.tlsCreds, tlsAuthz: tlsAuthzId(opts.tlsCreds) } : {}),
    });
    revert.add(() => nbdServerStop(qmp));
    await blockExportAddNbd(qmp, {
      id: opts.exportName,
      nodeName: opts.nodeName,
      name: opts.exportName,
      writable: true,
    });
    revert.success();
  } catch (err) {
    await revert.fail();
    throw new NovaError(
      "NOVA_QEMU_ERROR",
      `Failed exporting disk node ${opts.nodeName} over NBD on ${opts.host}:${opts.port}: ${(err as Error).message}`,
      { details: { nodeName: opts.nodeName, host: opts.host, port: opts.port }, cause: err },
    );
  }
}

/**
 * Destination: removes the export (dropping the source's connection if any) and stops the
 * NBD server, then waits until QEMU has let go of the export. Idempotent.
 */
export async function stopNbdExport(
  qmp: QmpClient,
  exportName: string,
  opts: { timeoutMs?: number } = {},
): Promise<void> {
  // Both calls fail harmlessly when the export or server is already gone; the final state is what counts.
  await blockExportDel(qmp, exportName, "hard").catch(() => {});
  await nbdServerStop(qmp).catch(() => {});
  await pollQmp(qmp, async () => ((await queryBlockExports(qmp)).includes(exportName) ? undefined : true), {
    timeoutMs: opts.timeoutMs ?? 10_000,
    pollMs: 20,
    what: `NBD export ${exportName} to close`,
    wakeOn: (ev) => ev.event === "BLOCK_EXPORT_DELETED",
  });
}

function toProgress(job: JobInfo): MirrorProgress {
  const p: MirrorProgress = {
    status: job.status,
    // "standby" is QEMU's state for a ready job that is paused (e.g. by a drain): still in sync.
    ready: job.status === "ready" || job.status === "standby",
    offset: job.currentProgress,
    len: job.totalProgress,
  };
  if (job.error !== undefined) p.error = job.error;
  return p;
}

/** The mirror job's state, or undefined when no job `jobId` exists. */
export async function queryMirror(qmp: QmpClient, jobId: string): Promise<MirrorProgress | undefined> {
  const job = (await queryJobs(qmp)).find((j) => j.id === jobId);
  return job ? toProgress(job) : undefined;
}

/** Options for startMirror. */
export interface MirrorOptions {
  /** Block job id; also names the target node (`<jobId>-tgt`). */
  jobId: string;
  /** The source drive ("drive-vda") or node-name to mirror. */
  sourceNode: string;
  /** The destination's export (startNbdExport). */
  nbd: NbdEndpoint;
  /** Connect with TLS (the export was started with tlsCreds); unset: plaintext. */
  tls?: QemuTlsPeer;
  /**
   * "background" copies dirty blocks asynchronously; "write-blocking" makes guest writes
   * wait until they reached the target once the job is ready. @defaultValue "background"
   */
  copyMode?: "background" | "write-blocking";
  /** Copy speed cap in bytes/s. @defaultValue unlimited */
  speedBytesPerSec?: number;
}

/**
 * Source: connects to the destination's export as node `<jobId>-tgt` and starts
 * `blockdev-mirror sync=top` into it. Returns once the job runs; on failure nothing is
 * left behind.
 */
export async function startMirror(qmp: QmpClient, opts: MirrorOptions): Promise<void> {
  const target = mirrorTargetNodeName(opts.jobId);
  checkEndpoint(opts.nbd);
  const revert = new Reverter();
  try {
    await blockdevAddNbd(qmp, {
      nodeName: target,
      host: opts.nbd.host,
      port: opts.nbd.port,
      exportName: opts.nbd.exportName,
      ...(opts.tls ? { tls: opts.tls } : {}),
    });
    revert.add(() => blockdevDel(qmp, target));
    await blockdevMirror(qmp, {
      jobId: opts.jobId,
      device: opts.sourceNode,
      target,
      sync: "top",
      autoDismiss: false,
      ...(opts.copyMode === undefined ? {} : { copyMode: opts.copyMode }),
      ...(opts.speedBytesPerSec === undefined ? {} : { speed: opts.speedBytesPerSec }),
    });
    revert.success();
  } catch (err) {
    await revert.fail();
    const { host, port, exportName } = opts.nbd;
    throw new NovaError(
      "NOVA_QEMU_ERROR",
      `Failed starting the disk mirror of ${opts.sourceNode} to nbd://${host}:${port}/${exportName}: ${(err as Error).message}`,
      { details: { jobId: opts.jobId, sourceNode: opts.sourceNode, ...opts.nbd }, cause: err },
    );
  }
}

function mirrorFailed(jobId: string, what: string, error: string | undefined): NovaError {
  return new NovaError(
    "NOVA_QEMU_ERROR",
    `Disk mirror ${jobId} failed ${what}: ${error ?? "no reason given"}`,
    {
      details: { jobId, error },
    },
  );
}

/** Options for waitMirrorReady. */
export interface WaitMirrorOptions {
  timeoutMs: number;
  signal?: AbortSignal;
  /** Called after every poll with bytes copied and bytes to copy. */
  onProgress?: (offset: number, len: number) => void;
  /** @defaultValue 250 */
  pollMs?: number;
}

/**
 * Source: waits until the mirror is in sync (job "ready"). Rejects with NOVA_QEMU_ERROR
 * when the job fails (e.g. the NBD connection broke), NOVA_NOT_FOUND when it vanished,
 * NOVA_TIMEOUT after `timeoutMs`; the job itself is left for cancelMirror.
 */
export async function waitMirrorReady(qmp: QmpClient, jobId: string, opts: WaitMirrorOptions): Promise<void> {
  await pollQmp(
    qmp,
    async () => {
      const job = await queryMirror(qmp, jobId);
      if (!job) {
        throw new NovaError("NOVA_NOT_FOUND", `Disk mirror ${jobId} does not exist`, { details: { jobId } });
      }
      opts.onProgress?.(job.offset, job.len);
      if (job.ready) return true;
      if (job.status === "concluded" || job.status === "null" || ENDING_STATES.has(job.status)) {
        throw mirrorFailed(jobId, "before it was in sync", job.error);
      }
      return undefined;
    },
    {
      timeoutMs: opts.timeoutMs,
      pollMs: opts.pollMs ?? 250,
      what: `disk mirror ${jobId} to be in sync`,
      signal: opts.signal,
      wakeOn: (ev) => ev.event === "BLOCK_JOB_READY" || ev.event === "JOB_STATUS_CHANGE",
    },
  );
}

/** Waits until job `jobId` is concluded (or gone) and returns its last state. */
async function waitConcluded(
  qmp: QmpClient,
  jobId: string,
  timeoutMs: number,
): Promise<MirrorProgress | undefined> {
  const result = await pollQmp(
    qmp,
    async () => {
      const job = await queryMirror(qmp, jobId);
      if (!job) return { job: undefined };
      return job.status === "concluded" || job.status === "null" ? { job } : undefined;
    },
    {
      timeoutMs,
      pollMs: 20,
      what: `disk mirror ${jobId} to end`,
      wakeOn: (ev) => ev.event === "JOB_STATUS_CHANGE" && ev.data?.id === jobId,
    },
  );
  return result.job;
}

async function removeTarget(qmp: QmpClient, jobId: string): Promise<void> {
  const target = mirrorTargetNodeName(jobId);
  if ((await queryNamedBlockNodes(qmp)).includes(target)) await blockdevDel(qmp, target);
}

/**
 * Source, at switch-over — migration status "pre-switchover", vCPUs stopped, disks still
 * active: copies what is still dirty, ends the ready mirror without pivoting
 * (block-job-cancel, see the module comment) and removes the target node. Afterwards the
 * destination's overlay is a consistent copy of the source's disk. Refuses while the
 * source vCPUs run (the copy would go stale at once) or when the job is not in sync.
 * QEMU also accepts it after "completed" (without pause-before-switchover), but by then
 * QEMU has inactivated the disks, so blocks still dirty at that moment would have no
 * consistent way across; migration.ts explains why we pause instead.
 */
export async function finishMirror(
  qmp: QmpClient,
  jobId: string,
  opts: { timeoutMs?: number } = {},
): Promise<void> {
  checkJobId(jobId);
  const job = await queryMirror(qmp, jobId);
  if (!job)
    throw new NovaError("NOVA_NOT_FOUND", `Disk mirror ${jobId} does not exist`, { details: { jobId } });
  if (job.status === "concluded") throw mirrorFailed(jobId, "before switch-over", job.error);
  // "standby" is a ready job paused by a drain (the vCPU stop drains the disks).
  if (job.status !== "ready" && job.status !== "standby") {
    throw new NovaError(
      "NOVA_ILLEGAL_STATE",
      `Failed finishing disk mirror ${jobId}: it is "${job.status}", not in sync yet (wait for it to be ready)`,
      { details: { jobId, jobStatus: job.status } },
    );
  }
  const vm = await queryStatus(qmp);
  if (vm.running) {
    throw new NovaError(
      "NOVA_ILLEGAL_STATE",
      `Failed finishing disk mirror ${jobId}: the source vCPUs still run, so the copy would be stale at once; finish it at switch-over`,
      { details: { jobId, vmStatus: vm.status } },
    );
  }
  await blockJobCancel(qmp, jobId, false);
  const end = await waitConcluded(qmp, jobId, opts.timeoutMs ?? DEFAULT_JOB_TIMEOUT_MS);
  if (end?.error !== undefined) {
    await jobDismiss(qmp, jobId).catch(() => {});
    throw mirrorFailed(jobId, "during its final sync", end.error);
  }
  if (end) await jobDismiss(qmp, jobId);
  await removeTarget(qmp, jobId);
}

/**
 * Source: abandons the mirror (block-job-cancel force), dismisses the job and removes the
 * target node. The source's disk is untouched. Idempotent: a missing job or node is fine.
 */
export async function cancelMirror(
  qmp: QmpClient,
  jobId: string,
  opts: { timeoutMs?: number } = {},
): Promise<void> {
  checkJobId(jobId);
  const job = await queryMirror(qmp, jobId);
  if (job && job.status !== "concluded" && job.status !== "null") {
    if (!ENDING_STATES.has(job.status)) {
      // It may end by itself between our query and the cancel; the wait below sorts that out.
      await blockJobCancel(qmp, jobId, true).catch(() => {});
    }
    await waitConcluded(qmp, jobId, opts.timeoutMs ?? DEFAULT_JOB_TIMEOUT_MS);
  }
  if (job) await jobDismiss(qmp, jobId).catch(() => {});
  await removeTarget(qmp, jobId);
}
