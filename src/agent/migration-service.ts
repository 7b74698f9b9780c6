/**
 * The agent's side of live migration (docs/agent-protocol.md): the destination's incoming
 * QEMU (prepare, finish) and the source's steps (mirror, memory, switch-over, post-copy,
 * cancel, release). Beside VmManager, which owns the VMs and persists which migration a VM
 * is part of (vm.json); this service owns what lives only while the agent runs, per
 * outgoing migration: the transport decision, the switch-over event times, the
 * switch-over bandwidth governor and the switch-over under way.
 *
 * Answers are read from QEMU itself and every step is idempotent, so the server can
 * repeat a call after a timeout and an agent restart mid-migration loses nothing: the
 * QEMU processes keep migrating and the restarted agent reports where they are. The
 * decisions are pure functions in migration-decisions.ts; QMP goes through the typed
 * functions of compute/qemu.
 */
import type {
  AgentIncomingEndpoints,
  AgentIncomingFinishPost,
  AgentIncomingPost,
  AgentOutgoingPost,
  AgentOutgoingStatus,
  ObservedVm,
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
import { blockdevDel, cont, queryStatus } from "../compute/qemu/commands.js";
import { noteMigrationEvent, type SwitchoverTimes } from "../compute/qemu/downtime-breakdown.js";
import {
  cancelOutgoing,
  continueSwitchover,
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
import { chooseBeforeDial } from "./dwcp/transport-choice.js";
import type { AgentDwcp, OutgoingDwcp, TransportDecision } from "./dwcp-transport.js";
import { freePort } from "./free-port.js";
import {
  cancelPlan,
  incomingLoaded,
  incomingStreamReady,
  migrationNames,
  outgoingView,
  shouldStartPostcopy,
  switchoverPlan,
} from "./migration-decisions.js";
import {
  governSwitchoverBandwidth,
  resetSwitchoverBandwidth,
  type SwitchoverEstimate,
  switchoverEstimateFromEnv,
} from "./switchover-bandwidth.js";
import type { VmManager } from "./vm-manager.js";

/** Where a step logs (the request's logger). */
export interface MigrationLog {
  debug(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** What MigrationService needs. */
export interface MigrationServiceDeps {
  vms: VmManager;
  /** The address migration and NBD listeners bind to (the agent's data address). */
  listenHost: string;
  /** The DWCP migration transport, when this agent offers it. */
  dwcp?: AgentDwcp | null;
  /** Who estimates the switch-over bandwidth over DWCP. @defaultValue from the environment */
  switchoverEstimate?: SwitchoverEstimate;
}

/** What the agent keeps about one outgoing migration while it runs. */
interface OutgoingRecord {
  /** A decision for QEMU's transport (DWCP decisions live with their session). */
  decision?: TransportDecision;
  /** Switch-over event times, for the downtime breakdown. */
  times?: SwitchoverTimes;
  /** Stops keeping QEMU's avail-switchover-bandwidth (switchover-bandwidth.ts). */
  stopGovernor?: () => void;
}

/** One agent's migrations; created once per agent API. */
export class MigrationService {
  private readonly vms: VmManager;
  private readonly listenHost: string;
  private readonly dwcp: AgentDwcp | null;
  private readonly switchoverEstimate: SwitchoverEstimate;
  private readonly outgoing = new Map<string, OutgoingRecord>();
  /** One switch-over per migration, whoever asks first (QEMU's pre-switchover event or the server). */
  private readonly switching = new Map<string, Promise<void>>();

  constructor(deps: MigrationServiceDeps) {
    this.vms = deps.vms;
    this.listenHost = deps.listenHost;
    this.dwcp = deps.dwcp ?? null;
    this.switchoverEstimate = deps.switchoverEstimate ?? switchoverEstimateFromEnv();
  }

  /** Destination: start a paused QEMU waiting for the VM, export its disk, listen. */
  async prepareIncoming(id: string, body: AgentIncomingPost): Promise<AgentIncomingEndpoints> {
    const { vms, listenHost, dwcp } = this;
    const { migrationId, spec, tuning } = body;
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
  }

  /** Destination: the source completed; stop exporting the disk and run the VM here. */
  async finishIncoming(id: string, body: AgentIncomingFinishPost): Promise<ObservedVm> {
    const { vms, dwcp } = this;
    const proc = this.requireProcess(id);
    const incoming = vms.incomingOf(id);
    if (incoming) {
      if (incoming.migrationId !== body.migrationId) {
        throw new NovaError(
          "NOVA_CONFLICT",
          `VM ${id} is waiting for migration ${incoming.migrationId}, not ${body.migrationId}`,
        );
      }
      // This QEMU was started for this migration only, so its status is about it.
      await waitFor(
        async () => {
          const migration = (await queryMigration(proc.qmp)).status;
          if (!incomingStreamReady(migration)) return undefined;
          return incomingLoaded(migration, (await queryStatus(proc.qmp)).status) || undefined;
        },
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
    return vms.adoptIncoming(id, body.generation);
  }

  /** Source: the status of `migrationId` as QEMU reports it (plus the DWCP relay's counters). */
  outgoingStatus(id: string, migrationId: string): Promise<AgentOutgoingStatus> {
    return this.readOutgoing(id, migrationId, this.dwcp);
  }

  /** Source: start a step (see AgentOutgoingPost); answers the status after it. */
  async outgoingStep(id: string, body: AgentOutgoingPost, log: MigrationLog): Promise<AgentOutgoingStatus> {
    const { vms, dwcp } = this;
    const { migrationId, step, endpoints, tuning, transport } = body;
    const proc = this.requireProcess(id);
    const { jobId } = migrationNames(migrationId);
    const status = await this.outgoingStatus(id, migrationId);
    if (step === "mirror") {
      if (!endpoints) throw new NovaError("NOVA_BAD_REQUEST", "the mirror step needs the target's endpoints");
      if (!status.mirror) {
        const out = await this.chooseTransport(migrationId, id, endpoints, transport ?? "auto");
        // A step cut short (agent restart) may have added the target node but not the job.
        await blockdevDel(proc.qmp, mirrorTargetNodeName(jobId)).catch(() => {});
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
        this.record(migrationId).times = times;
        const auto = body.autoSwitchover === true;
        const stopWatching = proc.qmp.onEvent((ev) => {
          noteMigrationEvent(times, ev);
          const st = ev.event === "MIGRATION" ? ev.data?.status : undefined;
          if (st === "pre-switchover" && auto) {
            // The source's vCPUs stop at pre-switchover: every round trip to the server
            // before continuing would be downtime. The destination still only runs the
            // VM when the server says so (incoming/finish), so the VM never runs twice.
            this.switchOver(id, migrationId).catch((err: unknown) =>
              log.warn({ err: describeError(err), migrationId }, "automatic switch-over failed"),
            );
          } else if (st === "completed" || st === "failed" || st === "cancelled") {
            stopWatching();
          }
        });
        try {
          // Through the relay QEMU over-estimates its switch-over bandwidth; the relay
          // measures the real one (QEMU ≥ 8.2, switchover-bandwidth.ts).
          if (out && this.switchoverEstimate === "relay") {
            this.outgoing.get(migrationId)?.stopGovernor?.();
            const stop = await governSwitchoverBandwidth(
              proc.qmp,
              () => out.stats(),
              tuning.downtimeLimitMs,
              log,
            );
            this.record(migrationId).stopGovernor = stop;
          } else {
            await resetSwitchoverBandwidth(proc.qmp);
          }
          await startOutgoing(proc.qmp, uri, tuning, { pauseBeforeSwitchover: true });
        } catch (err) {
          stopWatching();
          this.stopGovernor(migrationId);
          throw err;
        }
        await vms.markOutgoing(id, migrationId);
      }
    } else if (step === "switchover") {
      await this.switchOver(id, migrationId);
    } else if (step === "postcopy") {
      if (shouldStartPostcopy(status.memory?.status)) await startPostcopy(proc.qmp);
    }
    return this.outgoingStatus(id, migrationId);
  }

  /**
   * Source: abandon the migration; the VM keeps (or resumes) running here. After QEMU
   * completed the transfer the VM's latest state is on the target, so the source is only
   * resumed when the caller says the target's QEMU is gone (never both running).
   */
  async cancelOutgoing(id: string, migrationId: string, targetGone: boolean): Promise<AgentOutgoingStatus> {
    // An automatic switch-over already under way finishes first; what state it leaves
    // decides below whether the source may resume.
    await this.switching.get(migrationId)?.catch(() => undefined);
    const proc = this.vms.processOf(id);
    this.dwcp?.finishOutgoing(migrationId);
    this.forgetOutgoing(migrationId);
    // The session is closed: the status no longer shows the relay.
    if (!proc) return this.readOutgoing(id, migrationId, null);
    const status = await this.readOutgoing(id, migrationId, null);
    const plan = cancelPlan(status.memory?.status, status.mirror !== null, targetGone);
    if (plan.kind === "refuse") {
      throw new NovaError(
        "NOVA_ILLEGAL_STATE",
        "The transfer completed, so the target holds the VM's latest state; resume the source only after the target's QEMU is gone.",
      );
    }
    if (plan.kind === "resume-after-switchover") {
      if (plan.cancelMirror && status.mirror) await cancelMirror(proc.qmp, status.mirror.jobId);
      await resumeSourceAfterSwitchover(proc.qmp);
    } else {
      if (plan.cancelMemory) await cancelOutgoing(proc.qmp);
      if (plan.cancelMirror && status.mirror) await cancelMirror(proc.qmp, status.mirror.jobId);
      if ((await queryStatus(proc.qmp)).status !== "running") await cont(proc.qmp);
    }
    return this.readOutgoing(id, migrationId, null);
  }

  /** Source: the VM runs on the target now; remove this copy. */
  async releaseOutgoing(id: string): Promise<boolean> {
    // The migration this VM left by is over: end its DWCP session, if any.
    const migrationId = this.vms.outgoingOf(id);
    if (migrationId) {
      this.dwcp?.finishOutgoing(migrationId);
      this.forgetOutgoing(migrationId);
    }
    return this.vms.release(id);
  }

  private requireProcess(id: string): QemuProcess {
    const proc = this.vms.processOf(id);
    if (!proc) throw new NovaError("NOVA_NOT_FOUND", `VM ${id} has no running QEMU on this host`);
    return proc;
  }

  private record(migrationId: string): OutgoingRecord {
    let r = this.outgoing.get(migrationId);
    if (!r) {
      r = {};
      this.outgoing.set(migrationId, r);
    }
    return r;
  }

  private stopGovernor(migrationId: string): void {
    const r = this.outgoing.get(migrationId);
    r?.stopGovernor?.();
    if (r) delete r.stopGovernor;
  }

  /** Forgets what this agent kept about an outgoing migration that is over. */
  private forgetOutgoing(migrationId: string): void {
    this.outgoing.get(migrationId)?.stopGovernor?.();
    this.outgoing.delete(migrationId);
  }

  private async readOutgoing(
    id: string,
    migrationId: string,
    dwcp: AgentDwcp | null,
  ): Promise<AgentOutgoingStatus> {
    const proc = this.vms.processOf(id);
    if (!proc) return { vmStatus: "absent", mirror: null, memory: null };
    const { jobId } = migrationNames(migrationId);
    const [{ status }, mirror, memory] = await Promise.all([
      queryStatus(proc.qmp),
      queryMirror(proc.qmp, jobId),
      queryMigration(proc.qmp),
    ]);
    const out = dwcp?.outgoingOf(migrationId);
    const kept = this.outgoing.get(migrationId);
    return outgoingView({
      migrationId,
      vmStatus: status,
      mirror,
      memory,
      startedMigrationId: this.vms.outgoingOf(id),
      times: kept?.times,
      decision: out?.decision ?? kept?.decision,
      relay: out?.stats(),
    });
  }

  /**
   * Source, mirror step: decides how this migration's data travels and, for DWCP, opens the
   * session. `qemu`, or no DWCP on either side, means QEMU's own transport.
   */
  private async chooseTransport(
    migrationId: string,
    vmId: string,
    endpoints: AgentIncomingEndpoints,
    requested: "auto" | "qemu" | "dwcp",
  ): Promise<OutgoingDwcp | undefined> {
    const { dwcp } = this;
    const existing = dwcp?.outgoingOf(migrationId);
    if (existing) return existing;
    const choice = chooseBeforeDial({ requested, localDwcp: dwcp !== null, peerDwcp: !!endpoints.dwcp });
    if (choice.action === "fail") throw choice.error;
    if (choice.action === "use") {
      this.record(migrationId).decision = choice.decision;
      return undefined;
    }
    // "dial" comes only with DWCP on both sides and QEMU's transport not demanded; this
    // line says so to the type checker.
    if (!dwcp || !endpoints.dwcp || requested === "qemu") return undefined;
    const decision = await dwcp.startOutgoing(migrationId, vmId, endpoints.dwcp, requested);
    if (decision.chosen === "qemu") {
      this.record(migrationId).decision = decision;
      return undefined;
    }
    return dwcp.outgoingOf(migrationId);
  }

  /** One switch-over per migration, whoever asks first. */
  private switchOver(id: string, migrationId: string): Promise<void> {
    let p = this.switching.get(migrationId);
    if (!p) {
      p = (async () => {
        const proc = this.requireProcess(id);
        const status = await this.outgoingStatus(id, migrationId);
        const plan = switchoverPlan(status.memory?.status, status.mirror !== null);
        if (plan.finishMirror) await finishMirror(proc.qmp, migrationNames(migrationId).jobId);
        if (plan.continue) await continueSwitchover(proc.qmp);
      })().finally(() => this.switching.delete(migrationId));
      this.switching.set(migrationId, p);
    }
    return p;
  }
}
