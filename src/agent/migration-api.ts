/**
 * The agent's migration routes (docs/agent-protocol.md). Answers are read from QEMU
 * itself, and every step is idempotent, so the server can repeat a call after a timeout
 * and an agent restart mid-migration loses nothing: the QEMU processes keep migrating and
 * the restarted agent reports where they are. QEMU's migration status does not say which
 * migration it describes, so the agent records (in vm.json) which migration's memory
 * transfer it started, and QEMU's status counts only for that one.
 */
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import {
  type AgentIncomingEndpoints,
  AgentIncomingFinishPost,
  AgentIncomingPost,
  AgentOutgoingPost,
  type AgentOutgoingStatus,
} from "../api/types/agent.js";
import {
  cancelMirror,
  diskNodeName,
  finishMirror,
  mirrorTargetNodeName,
  queryMirror,
  startMirror,
  startNbdExport,
  stopNbdExport,
} from "../compute/qemu/block-mirror.js";
import { cont, queryStatus } from "../compute/qemu/commands.js";
import {
  downtimeBreakdown,
  noteMigrationEvent,
  type SwitchoverTimes,
} from "../compute/qemu/downtime-breakdown.js";
import {
  cancelOutgoing,
  continueSwitchover,
  type MigrationProgress,
  queryMigration,
  resumeSourceAfterSwitchover,
  startIncoming,
  startOutgoing,
  startPostcopy,
  tcpUri,
} from "../compute/qemu/migration.js";
import type { QemuProcess } from "../compute/qemu/process.js";
import { describeError, NovaError } from "../lib/errors.js";
import { waitFor } from "../lib/wait.js";
import type { AgentDwcp, OutgoingDwcp, TransportDecision } from "./dwcp-transport.js";
import { freePort } from "./free-port.js";
import {
  governSwitchoverBandwidth,
  resetSwitchoverBandwidth,
  switchoverEstimateFromEnv,
} from "./switchover-bandwidth.js";
import type { VmManager } from "./vm-manager.js";

const VmParams = Type.Object({ id: Type.String({ pattern: "^[0-9a-f-]{36}$" }) });
const MigrationQuery = Type.Object({ migrationId: Type.String({ minLength: 1 }) });
const CancelBody = Type.Object({
  migrationId: Type.String({ minLength: 1 }),
  targetGone: Type.Optional(Type.Boolean()),
});

/** The block job and NBD export names of a migration (derived, so nothing needs storing). */
export function migrationNames(migrationId: string): { jobId: string; exportName: string } {
  const short = migrationId.replace(/-/g, "").slice(0, 12);
  return { jobId: `mig-${short}`, exportName: `mig-${short}` };
}

function requireProcess(vms: VmManager, id: string): QemuProcess {
  const proc = vms.processOf(id);
  if (!proc) throw new NovaError("NOVA_NOT_FOUND", `VM ${id} has no running QEMU on this host`);
  return proc;
}

function memoryView(
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
  if (p.totalTimeMs !== undefined) view.totalTimeMs = p.totalTimeMs;
  if (p.cpuThrottlePercent !== undefined) view.cpuThrottlePercentage = p.cpuThrottlePercent;
  if (p.errorDesc !== undefined) view.errorDesc = p.errorDesc;
  return view;
}

/** The source side of `migrationId` as QEMU reports it (plus the DWCP relay's counters). */
export async function outgoingStatus(
  vms: VmManager,
  id: string,
  migrationId: string,
  dwcp?: AgentDwcp | null,
): Promise<AgentOutgoingStatus> {
  const proc = vms.processOf(id);
  if (!proc) return { vmStatus: "absent", mirror: null, memory: null };
  const { jobId } = migrationNames(migrationId);
  const [{ status }, mirror, memory] = await Promise.all([
    queryStatus(proc.qmp),
    queryMirror(proc.qmp, jobId),
    queryMigration(proc.qmp),
  ]);
  const ours = vms.outgoingOf(id) === migrationId && memory.status !== "none";
  const out = dwcp?.outgoingOf(migrationId);
  const relay = out?.stats();
  const decision = out?.decision ?? decisions.get(migrationId);
  return {
    vmStatus: status,
    mirror: mirror ? { jobId, ...mirror } : null,
    memory: ours ? memoryView(memory, switchTimes.get(migrationId)) : null,
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
                  },
                }
              : {}),
          },
        }
      : {}),
  };
}

/** Transport decisions that chose QEMU (DWCP ones live with their session), by migration. */
const decisions = new Map<string, TransportDecision>();

/** Switch-over event times of outgoing migrations, for the downtime breakdown. */
const switchTimes = new Map<string, SwitchoverTimes>();

/** Stops keeping QEMU's avail-switchover-bandwidth (switchover-bandwidth.ts), by migration. */
const governors = new Map<string, () => void>();

/** Forgets what this agent kept about an outgoing migration that is over. */
function forgetOutgoing(migrationId: string): void {
  decisions.delete(migrationId);
  switchTimes.delete(migrationId);
  governors.get(migrationId)?.();
  governors.delete(migrationId);
}

/**
 * Source, mirror step: decides how this migration's data travels and, for DWCP, opens the
 * session. `qemu`, or no DWCP on either side, means QEMU's own transport.
 */
function makeTransportChooser(dwcp: AgentDwcp | null) {
  return async (
    migrationId: string,
    vmId: string,
    endpoints: AgentIncomingEndpoints,
    requested: "auto" | "qemu" | "dwcp",
  ): Promise<OutgoingDwcp | undefined> => {
    const existing = dwcp?.outgoingOf(migrationId);
    if (existing) return existing;
    if (requested === "qemu" || !dwcp || !endpoints.dwcp) {
      if (requested === "dwcp")
        throw new NovaError(
          "NOVA_UNPROCESSABLE",
          `DWCP was requested but ${!dwcp ? "this agent" : "the destination agent"} does not offer it`,
        );
      decisions.set(migrationId, {
        chosen: "qemu",
        mode: null,
        reason: requested === "qemu" ? "requested" : "auto: DWCP is not available between these hosts",
        rttMs: null,
        probedMbps: null,
      });
      return undefined;
    }
    const decision = await dwcp.startOutgoing(migrationId, vmId, endpoints.dwcp, requested);
    if (decision.chosen === "qemu") {
      decisions.set(migrationId, decision);
      return undefined;
    }
    return dwcp.outgoingOf(migrationId);
  };
}

/** Registers the migration routes on the agent API. */
export function registerMigrationRoutes(
  app: FastifyInstance,
  vms: VmManager,
  listenHost: string,
  dwcp: AgentDwcp | null = null,
): void {
  const chooseTransport = makeTransportChooser(dwcp);
  const switchoverEstimate = switchoverEstimateFromEnv();
  // One switch-over per migration, whoever asks first: QEMU's pre-switchover event (when
  // the memory step asked for it) or the server's switchover step.
  const switching = new Map<string, Promise<void>>();
  const switchOver = (id: string, migrationId: string): Promise<void> => {
    let p = switching.get(migrationId);
    if (!p) {
      p = (async () => {
        const proc = requireProcess(vms, id);
        const status = await outgoingStatus(vms, id, migrationId, dwcp);
        const mem = status.memory?.status;
        if (mem === "pre-switchover") {
          if (status.mirror) await finishMirror(proc.qmp, migrationNames(migrationId).jobId);
          await continueSwitchover(proc.qmp);
        } else if (mem !== "completed" && mem !== "device") {
          throw new NovaError(
            "NOVA_ILLEGAL_STATE",
            `cannot switch over: the migration is ${mem ?? "not started"}`,
          );
        }
      })().finally(() => switching.delete(migrationId));
      switching.set(migrationId, p);
    }
    return p;
  };
  // Destination: start a paused QEMU waiting for the VM, export its disk, listen.
  app.post<{ Params: { id: string }; Body: AgentIncomingPost }>(
    "/agent/v1/vms/:id/incoming",
    { schema: { params: VmParams, body: AgentIncomingPost } },
    async (req): Promise<AgentIncomingEndpoints> => {
      const { id } = req.params;
      const { migrationId, spec, tuning } = req.body;
      const existing = vms.incomingOf(id);
      if (existing?.migrationId === migrationId && existing.endpoints && vms.processOf(id))
        return existing.endpoints;
      const proc = await vms.launchIncoming(id, spec, migrationId);
      try {
        const { exportName } = migrationNames(migrationId);
        const nbdPort = await freePort(listenHost);
        await startNbdExport(proc.qmp, {
          host: listenHost,
          port: nbdPort,
          exportName,
          nodeName: await diskNodeName(proc.qmp),
        });
        const migratePort = await freePort(listenHost);
        await startIncoming(proc.qmp, { host: listenHost, port: migratePort }, tuning);
        const endpoints: AgentIncomingEndpoints = {
          migrateUri: tcpUri(listenHost, migratePort),
          nbd: { host: listenHost, port: nbdPort, exportName },
        };
        if (dwcp)
          endpoints.dwcp = dwcp.expectIncoming(
            migrationId,
            id,
            { host: listenHost, port: migratePort },
            { host: listenHost, port: nbdPort },
          );
        await vms.setIncomingEndpoints(id, endpoints);
        return endpoints;
      } catch (err) {
        await vms.release(id);
        throw err;
      }
    },
  );

  // Destination: the source completed; stop exporting the disk and run the VM here.
  app.post<{ Params: { id: string }; Body: AgentIncomingFinishPost }>(
    "/agent/v1/vms/:id/incoming/finish",
    { schema: { params: VmParams, body: AgentIncomingFinishPost } },
    async (req) => {
      const { id } = req.params;
      const proc = requireProcess(vms, id);
      const incoming = vms.incomingOf(id);
      if (incoming) {
        if (incoming.migrationId !== req.body.migrationId) {
          throw new NovaError(
            "NOVA_CONFLICT",
            `VM ${id} is waiting for migration ${incoming.migrationId}, not ${req.body.migrationId}`,
          );
        }
        // This QEMU was started for this migration only, so its status is about it.
        // Ready to resume once QEMU finished loading the device state: the run state leaves
        // "inmigrate" (to "paused": autostart is off). The migration status alone is not
        // enough: in post-copy it reads "postcopy-active" before the device state is in,
        // and resuming then runs the guest on half-loaded state.
        const ready = new Set(["completed", "postcopy-active"]);
        await waitFor(
          async () =>
            (ready.has((await queryMigration(proc.qmp)).status) &&
              (await queryStatus(proc.qmp)).status !== "inmigrate") ||
            undefined,
          { timeoutMs: 30_000, what: "the incoming migration to load the VM's state" },
        );
        // Over DWCP, resume only a stream the relay verified end to end (SHA-256).
        await dwcp?.incomingVerified(incoming.migrationId);
        dwcp?.forgetIncoming(incoming.migrationId);
        await stopNbdExport(proc.qmp, migrationNames(incoming.migrationId).exportName);
        if ((await queryStatus(proc.qmp)).status !== "running") await cont(proc.qmp);
        const after = await queryStatus(proc.qmp);
        if (after.status !== "running")
          throw new NovaError("NOVA_QEMU_ERROR", `the destination QEMU is ${after.status} after cont`);
      }
      return vms.adoptIncoming(id, req.body.generation);
    },
  );

  // Source: start a step (see AgentOutgoingPost).
  app.post<{ Params: { id: string }; Body: AgentOutgoingPost }>(
    "/agent/v1/vms/:id/outgoing",
    { schema: { params: VmParams, body: AgentOutgoingPost } },
    async (req) => {
      const { id } = req.params;
      const { migrationId, step, endpoints, tuning, transport } = req.body;
      const proc = requireProcess(vms, id);
      const { jobId } = migrationNames(migrationId);
      const status = await outgoingStatus(vms, id, migrationId, dwcp);
      if (step === "mirror") {
        if (!endpoints)
          throw new NovaError("NOVA_BAD_REQUEST", "the mirror step needs the target's endpoints");
        if (!status.mirror) {
          const out = await chooseTransport(migrationId, id, endpoints, transport ?? "auto");
          // A step cut short (agent restart) may have added the target node but not the job.
          await proc.qmp
            .execute("blockdev-del", { "node-name": mirrorTargetNodeName(jobId) })
            .catch(() => {});
          await startMirror(proc.qmp, {
            jobId,
            sourceNode: await diskNodeName(proc.qmp),
            nbd: out ? { ...(await out.nbdEndpoint()), exportName: endpoints.nbd.exportName } : endpoints.nbd,
          });
        }
      } else if (step === "memory") {
        if (!endpoints || !tuning)
          throw new NovaError("NOVA_BAD_REQUEST", "the memory step needs endpoints and tuning");
        if (vms.outgoingOf(id) !== migrationId) {
          const out = dwcp?.outgoingOf(migrationId);
          const uri = out ? await out.migrateUri() : endpoints.migrateUri;
          const times: SwitchoverTimes = {};
          switchTimes.set(migrationId, times);
          const auto = req.body.autoSwitchover === true;
          const stopWatching = proc.qmp.onEvent((ev) => {
            noteMigrationEvent(times, ev);
            const st = ev.event === "MIGRATION" ? ev.data?.status : undefined;
            if (st === "pre-switchover" && auto) {
              // The source's vCPUs stop at pre-switchover: every round trip to the server
              // before continuing would be downtime. The destination still only runs the
              // VM when the server says so (incoming/finish), so the VM never runs twice.
              switchOver(id, migrationId).catch((err: unknown) =>
                req.log.warn({ err: describeError(err), migrationId }, "automatic switch-over failed"),
              );
            } else if (st === "completed" || st === "failed" || st === "cancelled") {
              stopWatching();
            }
          });
          try {
            // Through the relay QEMU over-estimates its switch-over bandwidth; the relay
            // measures the real one (QEMU ≥ 8.2, switchover-bandwidth.ts).
            if (out && switchoverEstimate === "relay") {
              const limit = tuning.downtimeLimitMs;
              governors.get(migrationId)?.();
              governors.set(
                migrationId,
                await governSwitchoverBandwidth(proc.qmp, () => out.stats(), limit, req.log),
              );
            } else {
              await resetSwitchoverBandwidth(proc.qmp);
            }
            await startOutgoing(proc.qmp, uri, tuning, {
              pauseBeforeSwitchover: true,
            });
          } catch (err) {
            stopWatching();
            governors.get(migrationId)?.();
            governors.delete(migrationId);
            throw err;
          }
          await vms.markOutgoing(id, migrationId);
        }
      } else if (step === "switchover") {
        await switchOver(id, migrationId);
      } else if (step === "postcopy") {
        if (status.memory?.status === "active") await startPostcopy(proc.qmp);
      }
      return outgoingStatus(vms, id, migrationId, dwcp);
    },
  );

  app.get<{ Params: { id: string }; Querystring: { migrationId: string } }>(
    "/agent/v1/vms/:id/outgoing",
    { schema: { params: VmParams, querystring: MigrationQuery } },
    async (req) => outgoingStatus(vms, req.params.id, req.query.migrationId, dwcp),
  );

  // Source: abandon the migration; the VM keeps (or resumes) running here. After QEMU
  // completed the transfer the VM's latest state is on the target, so the source is only
  // resumed when the caller says the target's QEMU is gone (never both running).
  app.post<{ Params: { id: string }; Body: { migrationId: string; targetGone?: boolean } }>(
    "/agent/v1/vms/:id/outgoing/cancel",
    { schema: { params: VmParams, body: CancelBody } },
    async (req) => {
      const { id } = req.params;
      const { migrationId, targetGone } = req.body;
      // An automatic switch-over already under way finishes first; what state it leaves
      // decides below whether the source may resume.
      await switching.get(migrationId)?.catch(() => undefined);
      const proc = vms.processOf(id);
      dwcp?.finishOutgoing(migrationId);
      forgetOutgoing(migrationId);
      if (!proc) return outgoingStatus(vms, id, migrationId);
      const status = await outgoingStatus(vms, id, migrationId);
      const mem = status.memory?.status;
      if (mem === "completed") {
        if (!targetGone) {
          throw new NovaError(
            "NOVA_ILLEGAL_STATE",
            "The transfer completed, so the target holds the VM's latest state; resume the source only after the target's QEMU is gone.",
          );
        }
        if (status.mirror) await cancelMirror(proc.qmp, status.mirror.jobId);
        await resumeSourceAfterSwitchover(proc.qmp);
      } else {
        if (mem && !["failed", "cancelled"].includes(mem)) await cancelOutgoing(proc.qmp);
        if (status.mirror) await cancelMirror(proc.qmp, status.mirror.jobId);
        if ((await queryStatus(proc.qmp)).status !== "running") await cont(proc.qmp);
      }
      return outgoingStatus(vms, id, migrationId);
    },
  );

  // Source: the VM runs on the target now; remove this copy.
  app.post<{ Params: { id: string } }>(
    "/agent/v1/vms/:id/outgoing/release",
    { schema: { params: VmParams } },
    async (req) => {
      // The migration this VM left by is over: end its DWCP session, if any.
      const migrationId = vms.outgoingOf(req.params.id);
      if (migrationId) {
        dwcp?.finishOutgoing(migrationId);
        forgetOutgoing(migrationId);
      }
      return { released: await vms.release(req.params.id) };
    },
  );
}
