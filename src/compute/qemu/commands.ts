/**
 * One typed function per QMP command NovaCron uses, so callers never spell command names or
 * parse untyped replies. Each takes a connected QmpClient; errors are the client's
 * (NOVA_QEMU_ERROR for QMP error replies, NOVA_QMP_PROTOCOL for a broken session).
 */
import { isNovaError } from "../../lib/errors.js";
import type { QmpClient, QmpVersion } from "./qmp.js";

/** The VM run state as QEMU reports it (query-status). */
export interface QemuStatus {
  /** QEMU's RunState, e.g. "running", "paused", "shutdown", "inmigrate", "postmigrate". */
  status: string;
  /** True while vCPUs are executing. */
  running: boolean;
}

/** Reads the VM's run state. */
export async function queryStatus(c: QmpClient): Promise<QemuStatus> {
  const reply = await c.execute<{ status: string; running: boolean }>("query-status");
  return { status: reply.status, running: reply.running };
}

/** Resumes vCPUs (after stop, or a start with -S). */
export async function cont(c: QmpClient): Promise<void> {
  await c.execute("cont");
}

/** Pauses vCPUs; QEMU and its devices stay up. */
export async function stop(c: QmpClient): Promise<void> {
  await c.execute("stop");
}

/** Presses the ACPI power button; the guest decides whether and when to power off. */
export async function systemPowerdown(c: QmpClient): Promise<void> {
  await c.execute("system_powerdown");
}

/** Hard-resets the machine, like the reset button. */
export async function systemReset(c: QmpClient): Promise<void> {
  await c.execute("system_reset");
}

/**
 * Makes QEMU exit immediately without asking the guest. QEMU may close the socket before
 * its reply arrives, so the session closing after the request counts as success.
 */
export async function quit(c: QmpClient): Promise<void> {
  const sent = !c.closed;
  try {
    await c.execute("quit");
  } catch (err) {
    // Only a session that ends *after* we sent quit is QEMU obeying it.
    if (sent && isNovaError(err, "NOVA_QMP_PROTOCOL")) return;
    throw err;
  }
}

/** QEMU's version. */
export async function queryVersion(c: QmpClient): Promise<QmpVersion> {
  return c.execute<QmpVersion>("query-version");
}

/** Whether KVM is compiled in (`present`) and in use by this VM (`enabled`). */
export async function queryKvm(c: QmpClient): Promise<{ enabled: boolean; present: boolean }> {
  const reply = await c.execute<{ enabled: boolean; present: boolean }>("query-kvm");
  return { enabled: reply.enabled, present: reply.present };
}

// ---------------------------------------------------------------- migration (memory) ---

/** A migration capability name (migrate-set-capabilities), e.g. "auto-converge", "postcopy-ram". */
export type MigrationCapability =
  | "events"
  | "auto-converge"
  | "postcopy-ram"
  | "pause-before-switchover"
  | "xbzrle"
  | "zero-blocks"
  | "return-path"
  | "multifd"
  | "late-block-activate";

/** Turns migration capabilities on or off; QEMU refuses this while a migration runs. */
export async function migrateSetCapabilities(
  c: QmpClient,
  caps: Partial<Record<MigrationCapability, boolean>>,
): Promise<void> {
  const capabilities = Object.entries(caps).map(([capability, state]) => ({ capability, state }));
  await c.execute("migrate-set-capabilities", { capabilities });
}

/** The migrate-set-parameters NovaCron uses (QEMU's names; sizes in bytes, times in ms). */
export interface MigrationParameters {
  "downtime-limit"?: number;
  "max-bandwidth"?: number;
  "cpu-throttle-initial"?: number;
  "cpu-throttle-increment"?: number;
  "max-cpu-throttle"?: number;
  "max-postcopy-bandwidth"?: number;
  "multifd-channels"?: number;
  "multifd-compression"?: "none" | "zlib" | "zstd";
  /**
   * QEMU ≥ 8.2: the bandwidth (bytes/s) QEMU assumes for the switch-over when deciding
   * whether the rest fits in downtime-limit; 0 = its own estimate.
   */
  "avail-switchover-bandwidth"?: number;
  /** The tls-creds-x509 object migrations use; "" turns TLS off (qemu-tls.ts). */
  "tls-creds"?: string;
  /** Destination: the authz object a TLS client's certificate subject must pass (qemu-tls.ts). */
  "tls-authz"?: string;
  /** Source: the name the destination's certificate must carry; "" = the URI's host. */
  "tls-hostname"?: string;
}

/** Whether this QEMU has a migration parameter (names differ across QEMU versions). */
export async function hasMigrationParameter(c: QmpClient, name: string): Promise<boolean> {
  const params = (await c.execute("query-migrate-parameters")) as Record<string, unknown> | undefined;
  return params !== undefined && name in params;
}

/** Sets migration parameters; takes effect immediately, also during a migration. */
export async function migrateSetParameters(c: QmpClient, params: MigrationParameters): Promise<void> {
  await c.execute("migrate-set-parameters", params as Record<string, unknown>);
}

/** Starts an outgoing migration to `uri` (e.g. "tcp:10.0.0.2:46001"); returns once it is started. */
export async function migrate(c: QmpClient, uri: string): Promise<void> {
  await c.execute("migrate", { uri });
}

/** On a QEMU started with `-incoming defer`: listens on `uri` for the incoming migration. */
export async function migrateIncoming(c: QmpClient, uri: string): Promise<void> {
  await c.execute("migrate-incoming", { uri });
}

/** Asks QEMU to cancel the outgoing migration; the status passes through "cancelling". */
export async function migrateCancel(c: QmpClient): Promise<void> {
  await c.execute("migrate_cancel");
}

/** Lets a migration paused in `state` (only "pre-switchover" exists) go on. */
export async function migrateContinue(c: QmpClient, state = "pre-switchover"): Promise<void> {
  await c.execute("migrate-continue", { state });
}

/** Switches a running pre-copy migration (with postcopy-ram on both sides) to post-copy. */
export async function migrateStartPostcopy(c: QmpClient): Promise<void> {
  await c.execute("migrate-start-postcopy");
}

/** The raw query-migrate reply; every member is optional (QEMU omits what the state lacks). */
export interface QueryMigrateReply {
  status?: string;
  "setup-time"?: number;
  downtime?: number;
  "expected-downtime"?: number;
  "total-time"?: number;
  "error-desc"?: string;
  "cpu-throttle-percentage"?: number;
  ram?: Record<string, unknown>;
  [key: string]: unknown;
}

/** Reads the state and statistics of the current or last migration (query-migrate). */
export async function queryMigrate(c: QmpClient): Promise<QueryMigrateReply> {
  return c.execute<QueryMigrateReply>("query-migrate");
}

// -------------------------------------------------------------------------- objects ---

/** Adds a QOM object (object-add), e.g. a tls-creds-x509. */
export async function objectAdd(
  c: QmpClient,
  qomType: string,
  id: string,
  props: Record<string, unknown>,
): Promise<void> {
  await c.execute("object-add", { "qom-type": qomType, id, ...props });
}

/** Removes a QOM object added with object-add. */
export async function objectDel(c: QmpClient, id: string): Promise<void> {
  await c.execute("object-del", { id });
}

/** The ids of the user-created objects (children of /objects). */
export async function queryObjects(c: QmpClient): Promise<string[]> {
  // QEMU 7.2 creates /objects with the first object: "not found" means none yet.
  const reply = await c
    .execute<Array<{ name: string; type: string }>>("qom-list", { path: "/objects" })
    .catch((err: unknown) => {
      if (err instanceof Error && /not found/i.test(err.message)) return [];
      throw err;
    });
  return reply.filter((p) => p.type.startsWith("child<")).map((p) => p.name);
}

// ------------------------------------------------------------- block layer, NBD, jobs ---

/** One entry of query-block: a guest drive and the node at its top. */
export interface BlockInfo {
  /** The drive id (`-drive id=…`), e.g. "drive-vda". */
  device: string;
  /** The format node's name (auto-generated "#blockNNN" for -drive without node-name). */
  nodeName?: string;
}

/** Lists the guest drives with the node-name of their top node. */
export async function queryBlock(c: QmpClient): Promise<BlockInfo[]> {
  const reply =
    await c.execute<Array<{ device: string; inserted?: { "node-name"?: string } }>>("query-block");
  return reply.map((b) => {
    const nodeName = b.inserted?.["node-name"];
    return nodeName === undefined ? { device: b.device } : { device: b.device, nodeName };
  });
}

/** The node names of every block node (query-named-block-nodes, flat). */
export async function queryNamedBlockNodes(c: QmpClient): Promise<string[]> {
  const reply = await c.execute<Array<{ "node-name": string }>>("query-named-block-nodes", { flat: true });
  return reply.map((n) => n["node-name"]);
}

/**
 * Starts QEMU's built-in NBD server on a TCP address; with `tlsCreds` (a server-endpoint
 * tls-creds object) every client must complete TLS before any other option.
 */
export async function nbdServerStart(
  c: QmpClient,
  addr: { host: string; port: number; tlsCreds?: string; tlsAuthz?: string },
): Promise<void> {
  await c.execute("nbd-server-start", {
    addr: { type: "inet", data: { host: addr.host, port: String(addr.port) } },
    ...(addr.tlsCreds ? { "tls-creds": addr.tlsCreds } : {}),
    ...(addr.tlsCreds && addr.tlsAuthz ? { "tls-authz": addr.tlsAuthz } : {}),
  });
}

/** Stops the NBD server, dropping its connections and removing every NBD export. */
export async function nbdServerStop(c: QmpClient): Promise<void> {
  await c.execute("nbd-server-stop");
}

/** Exports block node `nodeName` over the running NBD server as `name` (block-export-add). */
export async function blockExportAddNbd(
  c: QmpClient,
  opts: { id: string; nodeName: string; name: string; writable: boolean },
): Promise<void> {
  await c.execute("block-export-add", {
    type: "nbd",
    id: opts.id,
    "node-name": opts.nodeName,
    name: opts.name,
    writable: opts.writable,
  });
}

/** Removes a block export; "hard" drops its client connections instead of refusing. */
export async function blockExportDel(
  c: QmpClient,
  id: string,
  mode: "safe" | "hard" = "hard",
): Promise<void> {
  await c.execute("block-export-del", { id, mode });
}

/** The ids of the block exports that still exist (also those shutting down). */
export async function queryBlockExports(c: QmpClient): Promise<string[]> {
  const reply = await c.execute<Array<{ id: string }>>("query-block-exports");
  return reply.map((e) => e.id);
}

/**
 * Adds a protocol node that is an NBD client of `export` on a TCP server (blockdev-add);
 * with `tls` it talks TLS and checks the server's certificate against `tls.hostname`.
 */
export async function blockdevAddNbd(
  c: QmpClient,
  opts: {
    nodeName: string;
    host: string;
    port: number;
    exportName: string;
    tls?: { creds: string; hostname: string };
  },
): Promise<void> {
  await c.execute("blockdev-add", {
    driver: "nbd",
    "node-name": opts.nodeName,
    server: { type: "inet", host: opts.host, port: String(opts.port) },
    export: opts.exportName,
    ...(opts.tls ? { "tls-creds": opts.tls.creds, "tls-hostname": opts.tls.hostname } : {}),
  });
}

/** Removes a node added with blockdev-add (it must have no users left). */
export async function blockdevDel(c: QmpClient, nodeName: string): Promise<void> {
  await c.execute("blockdev-del", { "node-name": nodeName });
}

/** Arguments of blockdev-mirror that NovaCron uses. */
export interface BlockdevMirrorArgs {
  jobId: string;
  /** The device name or node-name whose writes are mirrored. */
  device: string;
  /** The target node (already added). */
  target: string;
  sync: "top" | "full" | "none";
  /** "write-blocking" copies guest writes synchronously once the job is ready. */
  copyMode?: "background" | "write-blocking";
  /** Copy speed limit in bytes/s; 0 or absent = unlimited. */
  speed?: number;
  /** When false, a finished job stays "concluded" (with its error) until job-dismiss. */
  autoDismiss?: boolean;
}

/** Starts a mirror block job. */
export async function blockdevMirror(c: QmpClient, a: BlockdevMirrorArgs): Promise<void> {
  const args: Record<string, unknown> = {
    "job-id": a.jobId,
    device: a.device,
    target: a.target,
    sync: a.sync,
  };
  if (a.copyMode !== undefined) args["copy-mode"] = a.copyMode;
  if (a.speed !== undefined) args.speed = a.speed;
  if (a.autoDismiss !== undefined) args["auto-dismiss"] = a.autoDismiss;
  await c.execute("blockdev-mirror", args);
}

/**
 * Cancels a block job. On a mirror that is ready, `force: false` first brings the target
 * in sync and then ends the job *without* switching the guest to the target (the job ends
 * as completed, leaving a point-in-time copy); `force: true` abandons it at once.
 */
export async function blockJobCancel(c: QmpClient, jobId: string, force: boolean): Promise<void> {
  await c.execute("block-job-cancel", { device: jobId, force });
}

/** Removes a concluded job (one started with auto-dismiss off). */
export async function jobDismiss(c: QmpClient, jobId: string): Promise<void> {
  await c.execute("job-dismiss", { id: jobId });
}

/** One job as query-jobs reports it. */
export interface JobInfo {
  id: string;
  type: string;
  /** created, running, paused, ready, standby, waiting, pending, aborting, concluded, null… */
  status: string;
  currentProgress: number;
  totalProgress: number;
  /** Set on a concluded job that failed or was cancelled. */
  error?: string;
}

/** Lists every job (block jobs included) with its status, progress and error. */
export async function queryJobs(c: QmpClient): Promise<JobInfo[]> {
  const reply =
    await c.execute<
      Array<{
        id: string;
        type: string;
        status: string;
        "current-progress": number;
        "total-progress": number;
        error?: string;
      }>
    >("query-jobs");
  return reply.map((j) => ({
    id: j.id,
    type: j.type,
    status: j.status,
    currentProgress: j["current-progress"],
    totalProgress: j["total-progress"],
    ...(j.error === undefined ? {} : { error: j.error }),
  }));
}
