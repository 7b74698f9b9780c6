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
  AgentCopyState,
  AgentIncomingEndpoints,
  AgentIncomingFinishPost,
  AgentIncomingPost,
  AgentOutgoingPost,
  AgentOutgoingStatus,
  FenceToken,
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
  waitMirrorReady,
} from "../compute/qemu/block-mirror.js";
import { blockdevDel, cont, queryStatus } from "../compute/qemu/commands.js";
import { noteMigrationEvent, type SwitchoverTimes } from "../compute/qemu/downtime-breakdown.js";
import {
  cancelOutgoing,
  continueSwitchover,
  queryMigration,
  releaseSwitchover,
  resumeSourceAfterSwitchover,
  startIncoming,
  startOutgoing,
  startPostcopy,
  tcpUri,
} from "../compute/qemu/migration.js";
import type { QemuProcess } from "../compute/qemu/process.js";
import {
  addTlsCreds,
  nodeTlsClientOptions,
  type QemuTlsConfig,
  type QemuTlsPeer,
  removeTlsCreds,
  tlsCredsId,
} from "../compute/qemu/qemu-tls.js";
import { describeError, NovaError } from "../lib/errors.js";
import { failpoint } from "../lib/failpoints.js";
import { waitFor } from "../lib/wait.js";
import { copyStateOf } from "./copy-state.js";
import { parsePeerCa } from "./dwcp/peer-trust.js";
import { chooseBeforeDial } from "./dwcp/transport-choice.js";
import type { AgentDwcp, OutgoingDwcp, TransportDecision } from "./dwcp-transport.js";
import type { FenceStore } from "./fence-store.js";
import { freePort } from "./free-port.js";
import {
  cancelPlan,
  incomingListeners,
  incomingLoaded,
  incomingStreamReady,
  migrationNames,
  outgoingView,
  shouldStartPostcopy,
  switchoverPlan,
} from "./migration-decisions.js";
import { governRunAhead } from "./relay-run-ahead.js";
import {
  governSwitchoverBandwidth,
  resetSwitchoverBandwidth,
  type SwitchoverEstimate,
  switchoverEstimateFromEnv,
} from "./switchover-bandwidth.js";
import type { VmManager } from "./vm-manager.js";

/** Where QEMU listens when only the DWCP relay (on this host) may reach it. */
const LOOPBACK = "127.0.0.1";

/** Where a step logs (the request's logger). */
export interface MigrationLog {
  debug(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** What MigrationService needs. */
export interface MigrationServiceDeps {
  vms: VmManager;
  /** The fencing tokens: resuming a copy (finish, cancel) needs the VM's current one. */
  fences: FenceStore;
  /**
   * The address QEMU's migration and NBD listeners bind to when QEMU's own transport may
   * carry the migration (the agent's data address); behind the DWCP relay they bind
   * 127.0.0.1.
   */
  listenHost: string;
  /** This host's name in the cluster: what its certificate names, and what sources check. */
  hostName: string;
  /**
   * QEMU's TLS credentials (qemu-tls.ts): every QEMU listener on `listenHost` requires a
   * client certificate from the CA, and this agent's QEMU checks the destination's.
   */
  qemuTls?: QemuTlsConfig | null;
  /**
   * The explicit, insecure opt-in: QEMU's listeners on `listenHost` take anyone. Without it
   * and without `qemuTls`, a migration that would expose them fails (NOVA_MIGRATION_INSECURE).
   * @defaultValue false
   */
  qemuPlaintext?: boolean;
  /** The DWCP migration transport, when this agent offers it. */
  dwcp?: AgentDwcp | null;
  /** Who estimates the switch-over bandwidth over DWCP. @defaultValue from the environment */
  switchoverEstimate?: SwitchoverEstimate;
  /** Where what goes wrong outside a request is said. */
  log?: MigrationLog;
}

/** What the agent keeps about one outgoing migration while it runs. */
interface OutgoingRecord {
  /** A decision for QEMU's transport (DWCP decisions live with their session). */
  decision?: TransportDecision;
  /** Switch-over event times, for the downtime breakdown. */
  times?: SwitchoverTimes;
  /** Stops keeping QEMU's avail-switchover-bandwidth and the relay's run-ahead. */
  stopGovernor?: () => void;
  /**
   * Memory started before the disk mirror was in sync: QEMU's switch-over is held back
   * (downtime limit 0) until the mirror is ready, then gets this limit.
   */
  hold?: { downtimeLimitMs: number; released: boolean };
  /** The disk mirror's start, when it runs in the background (over DWCP). */
  mirrorStart?: Promise<void>;
  /** Why that start failed; reported as the mirror's error. */
  mirrorStartError?: string;
}

/** QEMU migration statuses a switch-over ends in (post-copy has its own step). */
const SWITCHOVER_ENDED = new Set(["completed", "failed", "cancelled"]);
/** How long the switch-over step waits for QEMU to end it before answering. */
const SWITCHOVER_ANSWER_WAIT_MS = 2000;

/** How long a switch-over waits for a mirror that was not in sync when the guest stopped. */
const MIRROR_AT_SWITCHOVER_TIMEOUT_MS = 120_000;

/** One agent's migrations; created once per agent API. */
export class MigrationService {
  private readonly vms: VmManager;
  private readonly fences: FenceStore;
  private readonly listenHost: string;
  private readonly hostName: string;
  private readonly qemuTls: QemuTlsConfig | null;
  private readonly qemuPlaintext: boolean;
  private readonly dwcp: AgentDwcp | null;
  private readonly switchoverEstimate: SwitchoverEstimate;
  private readonly outgoing = new Map<string, OutgoingRecord>();
  /** One switch-over per migration, whoever asks first (QEMU's pre-switchover event or the server). */
  private readonly switching = new Map<string, Promise<void>>();

  constructor(deps: MigrationServiceDeps) {
    this.vms = deps.vms;
    this.fences = deps.fences;
    this.listenHost = deps.listenHost;
    this.hostName = deps.hostName;
    this.qemuTls = deps.qemuTls ?? null;
    this.qemuPlaintext = deps.qemuPlaintext ?? false;
    this.dwcp = deps.dwcp ?? null;
    this.switchoverEstimate = deps.switchoverEstimate ?? switchoverEstimateFromEnv();
    deps.dwcp?.onIncomingRelayMark((migrationId, vmId, mark) => {
      this.vms
        .noteIncomingRelay(vmId, migrationId, mark)
        .catch((err: unknown) =>
          deps.log?.warn(
            { err: describeError(err), migrationId },
            "recording the incoming relay's course failed",
          ),
        );
    });
  }

  /**
   * Why the DWCP relay feeding `id`'s incoming migration cannot be trusted, if it cannot:
   * it failed, or this agent restarted after the source chose DWCP and before the stream
   * was verified (the check died with the old process).
   */
  private incomingRelayFailure(id: string): string | undefined {
    const incoming = this.vms.incomingOf(id);
    if (!incoming) return undefined;
    const failed = this.dwcp?.incomingFailure(incoming.migrationId);
    if (failed) return failed;
    if (incoming.relay === "started" && !this.dwcp?.hasIncomingRelay(incoming.migrationId))
      return "the agent restarted before the relayed stream was verified end to end";
    return undefined;
  }

  /**
   * Destination: start a paused QEMU waiting for the VM, export its disk, listen. Where
   * (docs/migration.md, "Who listens where"): over DWCP only (requested "dwcp") QEMU's
   * listeners bind 127.0.0.1 and only the relay reaches them; otherwise the source may
   * still choose QEMU's own transport, so they bind the data address, with TLS (or the
   * plaintext opt-in), and should the source choose DWCP after all the relay meets them
   * there over TLS (memory) or moves the NBD export to loopback first (disk).
   */
  async prepareIncoming(id: string, body: AgentIncomingPost): Promise<AgentIncomingEndpoints> {
    const { vms, dwcp } = this;
    const { migrationId, spec, tuning } = body;
    const existing = vms.incomingOf(id);
    if (existing?.migrationId === migrationId && existing.endpoints && vms.processOf(id))
      return existing.endpoints;
    // Another migration's copy is replaced below: its session (and peer CA) goes with it.
    if (existing && existing.migrationId !== migrationId) dwcp?.forgetIncoming(existing.migrationId);
    // Refused before anything starts: another cluster's migration over QEMU's transport,
    // or without DWCP, or with a CA that is none.
    const crossCluster = body.peerCaPem !== undefined;
    if (body.peerCaPem !== undefined) parsePeerCa(body.peerCaPem);
    const { behindRelay } = incomingListeners({
      transport: body.transport,
      crossCluster,
      dwcp: dwcp !== null,
    });
    // Before launching anything: an exposed listener needs TLS or the explicit opt-in.
    const tls = behindRelay ? null : this.requireQemuSecurity();
    const host = behindRelay ? LOOPBACK : this.listenHost;
    const proc = await vms.launchIncoming(id, spec, migrationId);
    try {
      const { exportName, jobId } = migrationNames(migrationId);
      const tlsCreds = tls
        ? await addTlsCreds(proc.qmp, { id: tlsCredsId(jobId, "server"), dir: tls.dir, endpoint: "server" })
        : undefined;
      const nodeName = await diskNodeName(proc.qmp);
      const nbdPort = await freePort(host);
      await startNbdExport(proc.qmp, { host, port: nbdPort, exportName, nodeName, tlsCreds });
      const migratePort = await freePort(host);
      await startIncoming(proc.qmp, { host, port: migratePort, tlsCreds }, tuning);
      const endpoints: AgentIncomingEndpoints = {
        migrateUri: tcpUri(host, migratePort),
        nbd: { host, port: nbdPort, exportName },
        ...(tls ? { tls: { hostname: this.hostName } } : {}),
      };
      if (dwcp) {
        // The relay is a TLS client of this QEMU like any source; NBD's TLS starts inside
        // the client's own handshake (which the relay forwards), so the export moves to
        // loopback instead once the source chose DWCP (before any client connected).
        let moved: Promise<{ host: string; port: number }> | undefined;
        const nbdForRelay = async (): Promise<{ host: string; port: number }> => {
          await stopNbdExport(proc.qmp, exportName);
          const port = await freePort(LOOPBACK);
          await startNbdExport(proc.qmp, { host: LOOPBACK, port, exportName, nodeName });
          return { host: LOOPBACK, port };
        };
        endpoints.dwcp = dwcp.expectIncoming(
          migrationId,
          id,
          { host, port: migratePort, ...(tls ? { tls: nodeTlsClientOptions(tls, this.hostName) } : {}) },
          tls ? () => (moved ??= nbdForRelay()) : { host, port: nbdPort },
          body.peerCaPem,
        );
      }
      await vms.setIncomingEndpoints(id, endpoints);
      return endpoints;
    } catch (err) {
      dwcp?.forgetIncoming(migrationId);
      await vms.release(id);
      throw err;
    }
  }

  /**
   * Deletes the VM from this host (vms.delete); a migration it was waiting for ends with
   * it: its DWCP session, and the peer CA trusted for it, are dropped.
   */
  async deleteVm(id: string): Promise<boolean> {
    const incoming = this.vms.incomingOf(id)?.migrationId;
    const deleted = await this.vms.delete(id);
    if (incoming) this.dwcp?.forgetIncoming(incoming);
    return deleted;
  }

  /**
   * Destination: the source completed; stop exporting the disk and run the VM here. Only
   * with the VM's current token (NOVA_ACP_FENCED otherwise, the copy left paused).
   */
  async finishIncoming(id: string, body: AgentIncomingFinishPost): Promise<ObservedVm> {
    failpoint("agent.incoming.finish");
    const { vms, dwcp } = this;
    const proc = this.requireProcess(id);
    await this.fences.admit(id, body.fence, "run");
    const incoming = vms.incomingOf(id);
    let resumedAt: number | undefined;
    if (incoming) {
      if (incoming.migrationId !== body.migrationId) {
        throw new NovaError(
          "NOVA_CONFLICT",
          `VM ${id} is waiting for migration ${incoming.migrationId}, not ${body.migrationId}`,
        );
      }
      const untrusted = this.incomingRelayFailure(id);
      if (untrusted)
        throw new NovaError(
          "NOVA_MIGRATION_RELAY",
          `VM ${id}'s copy is not resumed: ${untrusted}; the source keeps the VM`,
        );
      // This QEMU was started for this migration only, so its status is about it. Over
      // DWCP, resume only a stream the relay verified end to end (SHA-256). Both are
      // awaited together: each waits for the stream's last bytes, and the guest is paused.
      await Promise.all([
        waitFor(
          async () => {
            const migration = (await queryMigration(proc.qmp)).status;
            if (!incomingStreamReady(migration)) return undefined;
            return incomingLoaded(migration, (await queryStatus(proc.qmp)).status) || undefined;
          },
          { timeoutMs: 30_000, what: "the incoming migration to load the VM's state" },
        ),
        dwcp?.incomingVerified(incoming.migrationId),
      ]);
      dwcp?.forgetIncoming(incoming.migrationId);
      const { exportName, jobId } = migrationNames(incoming.migrationId);
      await stopNbdExport(proc.qmp, exportName);
      // The VM now runs here for good; its next migration loads the files afresh.
      if (this.qemuTls) await removeTlsCreds(proc.qmp, tlsCredsId(jobId, "server"));
      if ((await queryStatus(proc.qmp)).status !== "running") {
        await cont(proc.qmp);
        resumedAt = Date.now();
      }
      const after = await queryStatus(proc.qmp);
      if (after.status !== "running")
        throw new NovaError("NOVA_QEMU_ERROR", `the destination QEMU is ${after.status} after cont`);
    }
    const observed = await vms.adoptIncoming(id, body.generation);
    return resumedAt === undefined ? observed : { ...observed, resumedAt };
  }

  /**
   * What this host holds of the VM (copy-state.ts), read from QEMU: right after an agent
   * restart too. A QEMU that exits while it is asked is gone.
   */
  async copyState(id: string): Promise<AgentCopyState> {
    const ids = {
      incomingMigrationId: this.vms.incomingOf(id)?.migrationId,
      outgoingMigrationId: this.vms.outgoingOf(id),
      incomingRelayFailure: this.incomingRelayFailure(id),
    };
    const proc = this.vms.processOf(id);
    if (!proc) return copyStateOf({ qemu: null, ...ids });
    try {
      const [{ status }, { status: migrationStatus }] = await Promise.all([
        queryStatus(proc.qmp),
        queryMigration(proc.qmp),
      ]);
      return copyStateOf({ qemu: { runState: status, migrationStatus }, ...ids });
    } catch (err) {
      // QEMU died between the lookup and the query: its exit is what counts.
      const died = await Promise.race([proc.exited.then(() => true), delayFalse(1000)]);
      if (died || !this.vms.processOf(id)) return copyStateOf({ qemu: null, ...ids });
      throw err;
    }
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
      const kept = this.record(migrationId);
      if (!status.mirror && !kept.mirrorStart) {
        const out = await this.chooseTransport(migrationId, id, endpoints, transport ?? "auto");
        // A step cut short (agent restart) may have added the target node but not the job.
        await blockdevDel(proc.qmp, mirrorTargetNodeName(jobId)).catch(() => {});
        // The relay's endpoint is on loopback and plaintext; the destination's own needs TLS.
        const tls = out ? undefined : await this.peerTls(proc, migrationId, endpoints);
        const start = (async () =>
          startMirror(proc.qmp, {
            jobId,
            sourceNode: await diskNodeName(proc.qmp),
            nbd: out ? { ...(await out.nbdEndpoint()), exportName: endpoints.nbd.exportName } : endpoints.nbd,
            ...(tls ? { tls } : {}),
          }))();
        if (out) {
          // Over DWCP adding the mirror's NBD node negotiates with the export across the
          // path (several round trips): memory may start meanwhile (plan.ts), held back
          // from switching over until the mirror is in sync. A failure shows in the status.
          kept.mirrorStart = start.catch((err: unknown) => {
            kept.mirrorStartError = describeError(err);
          });
        } else {
          await start;
        }
      }
    } else if (step === "memory") {
      if (!endpoints || !tuning)
        throw new NovaError("NOVA_BAD_REQUEST", "the memory step needs endpoints and tuning");
      if (vms.outgoingOf(id) !== migrationId) {
        const out = dwcp?.outgoingOf(migrationId);
        const uri = out ? await out.migrateUri() : endpoints.migrateUri;
        const tls = out ? undefined : await this.peerTls(proc, migrationId, endpoints);
        const times: SwitchoverTimes = {};
        const kept = this.record(migrationId);
        kept.times = times;
        // Over DWCP memory may start while the mirror still starts or catches up (plan.ts);
        // QEMU must not stop the guest before the disk is in sync, or the switch-over would
        // wait for it.
        const hold = (status.mirror !== null || kept.mirrorStart !== undefined) && !status.mirror?.ready;
        if (hold) kept.hold = { downtimeLimitMs: tuning.downtimeLimitMs, released: false };
        const auto = body.autoSwitchover === true;
        const stopWatching = proc.qmp.onEvent((ev) => {
          noteMigrationEvent(times, ev);
          if (ev.event === "BLOCK_JOB_READY" && ev.data?.device === jobId) {
            this.releaseHold(proc, kept).catch((err: unknown) =>
              log.warn({ err: describeError(err), migrationId }, "releasing the switch-over failed"),
            );
          }
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
          this.stopGovernor(migrationId);
          const stops: (() => void)[] = [];
          // The relay's run-ahead follows QEMU's progress (relay-run-ahead.ts).
          const relay = out?.memoryRelay();
          if (relay) stops.push(governRunAhead(proc.qmp, relay, log));
          // Through the relay QEMU over-estimates its switch-over bandwidth; the relay
          // measures the real one (QEMU ≥ 8.2, switchover-bandwidth.ts).
          if (out && this.switchoverEstimate === "relay") {
            stops.push(
              await governSwitchoverBandwidth(proc.qmp, () => out.stats(), tuning.downtimeLimitMs, log),
            );
          } else {
            await resetSwitchoverBandwidth(proc.qmp);
          }
          kept.stopGovernor = () => {
            for (const stop of stops) stop();
          };
          await startOutgoing(proc.qmp, uri, tuning, {
            pauseBeforeSwitchover: true,
            holdSwitchover: hold,
            ...(tls ? { tls } : {}),
          });
          // The mirror may have become ready before the event listener saw it.
          if (hold && (await queryMirror(proc.qmp, jobId))?.ready) await this.releaseHold(proc, kept);
        } catch (err) {
          stopWatching();
          this.stopGovernor(migrationId);
          throw err;
        }
        await vms.markOutgoing(id, migrationId);
      }
    } else if (step === "switchover") {
      await this.switchOver(id, migrationId);
      // QEMU sends the last pages and the device state right after: answering with its
      // end lets the server confirm on the target at once instead of at its next poll,
      // which the guest would spend paused. Bounded; the server polls on otherwise.
      await waitFor(async () => SWITCHOVER_ENDED.has((await queryMigration(proc.qmp)).status) || undefined, {
        timeoutMs: SWITCHOVER_ANSWER_WAIT_MS,
        intervalMs: 10,
        what: "QEMU to end the switch-over",
      }).catch(() => undefined);
    } else if (step === "postcopy") {
      if (shouldStartPostcopy(status.memory?.status)) await startPostcopy(proc.qmp);
    }
    return this.outgoingStatus(id, migrationId);
  }

  /**
   * Source: abandon the migration; the VM keeps (or resumes) running here. After QEMU
   * completed the transfer the VM's latest state is on the target, so the source is only
   * resumed when the caller says the target's QEMU is gone (never both running). Resuming
   * needs the VM's current token: with a stale one or another owner's, nothing is touched
   * (NOVA_ACP_FENCED); with no QEMU here a newer token is only kept.
   */
  async cancelOutgoing(
    id: string,
    migrationId: string,
    targetGone: boolean,
    fence: FenceToken,
  ): Promise<AgentOutgoingStatus> {
    await this.fences.admit(id, fence, this.vms.processOf(id) ? "run" : "safe");
    // An automatic switch-over already under way finishes first; what state it leaves
    // decides below whether the source may resume.
    await this.switching.get(migrationId)?.catch(() => undefined);
    // A mirror still starting in the background would otherwise appear after the cancel.
    await this.outgoing.get(migrationId)?.mirrorStart;
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
    // The VM stays here: drop the migration's credentials (a later one loads fresh files).
    if (this.qemuTls) await removeTlsCreds(proc.qmp, tlsCredsId(migrationNames(migrationId).jobId, "client"));
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

  /**
   * What a listener on the data address needs: the TLS credentials, or null for the
   * plaintext opt-in; neither fails the migration before anything starts.
   */
  private requireQemuSecurity(): QemuTlsConfig | null {
    if (this.qemuTls) return this.qemuTls;
    if (this.qemuPlaintext) return null;
    throw new NovaError(
      "NOVA_MIGRATION_INSECURE",
      `QEMU's migration and NBD listeners would be exposed on ${this.listenHost} without authentication: this agent has no QEMU TLS credentials and no plaintext opt-in`,
      { details: { listenHost: this.listenHost } },
    );
  }

  /**
   * Source, QEMU's own transport: TLS to the destination as its endpoints ask, with this
   * agent's credentials loaded into the VM's QEMU (per migration, so a rotated
   * certificate is read afresh). Undefined: plaintext, which both agents must allow.
   */
  private async peerTls(
    proc: QemuProcess,
    migrationId: string,
    endpoints: AgentIncomingEndpoints,
  ): Promise<QemuTlsPeer | undefined> {
    if (!endpoints.tls) {
      if (this.qemuPlaintext) return undefined;
      throw new NovaError(
        "NOVA_MIGRATION_INSECURE",
        "The destination offers QEMU's transport without TLS, and this agent requires TLS (plaintext needs the opt-in on both agents)",
      );
    }
    if (!this.qemuTls)
      throw new NovaError(
        "NOVA_MIGRATION_INSECURE",
        `The destination ${endpoints.tls.hostname} requires TLS on QEMU's transport, and this agent has no QEMU TLS credentials`,
        { details: { hostname: endpoints.tls.hostname } },
      );
    const creds = await addTlsCreds(proc.qmp, {
      id: tlsCredsId(migrationNames(migrationId).jobId, "client"),
      dir: this.qemuTls.dir,
      endpoint: "client",
    });
    return { creds, hostname: endpoints.tls.hostname };
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

  /** Lets QEMU switch over within the migration's downtime limit again (once). */
  private async releaseHold(proc: QemuProcess, kept: OutgoingRecord): Promise<void> {
    const h = kept.hold;
    if (!h || h.released) return;
    h.released = true;
    try {
      await releaseSwitchover(proc.qmp, h.downtimeLimitMs);
    } catch (err) {
      h.released = false;
      throw err;
    }
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
    // A missed BLOCK_JOB_READY event is caught by the next status read (the server polls).
    if (kept?.hold && !kept.hold.released && mirror?.ready) await this.releaseHold(proc, kept);
    const failedStart =
      !mirror && kept?.mirrorStartError
        ? { status: "concluded", ready: false, offset: 0, len: 0, error: kept.mirrorStartError }
        : undefined;
    return outgoingView({
      migrationId,
      vmStatus: status,
      mirror: mirror ?? failedStart,
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
    const choice = chooseBeforeDial({
      requested,
      localDwcp: dwcp !== null,
      peerDwcp: !!endpoints.dwcp,
      crossCluster: endpoints.dwcp?.caPem !== undefined,
    });
    if (choice.action === "fail") throw choice.error;
    if (choice.action === "use") {
      this.record(migrationId).decision = choice.decision;
      return undefined;
    }
    // "dial" comes only with DWCP on both sides; this line says so to the type checker.
    if (!dwcp || !endpoints.dwcp) return undefined;
    const decision = await dwcp.startOutgoing(migrationId, vmId, endpoints.dwcp, choice.requested);
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
        await this.outgoing.get(migrationId)?.mirrorStart;
        const status = await this.outgoingStatus(id, migrationId);
        const plan = switchoverPlan(status.memory?.status, status.mirror !== null);
        const { jobId } = migrationNames(migrationId);
        // Only when QEMU had nothing at all left to send while its switch-over was held
        // back (holdSwitchover) can it stop before the mirror is in sync: the mirror goes
        // on copying with the vCPUs stopped, which costs downtime but nothing else.
        if (plan.finishMirror && status.mirror && !status.mirror.ready)
          await waitMirrorReady(proc.qmp, jobId, { timeoutMs: MIRROR_AT_SWITCHOVER_TIMEOUT_MS });
        if (plan.finishMirror) await finishMirror(proc.qmp, jobId);
        if (plan.continue) await continueSwitchover(proc.qmp);
      })().finally(() => this.switching.delete(migrationId));
      this.switching.set(migrationId, p);
    }
    return p;
  }
}

/** Resolves false after `ms` (a bounded wait that never rejects). */
function delayFalse(ms: number): Promise<false> {
  return new Promise((resolve) => setTimeout(() => resolve(false), ms).unref());
}
