/**
 * Agents joining and reporting: registration (a one-time join token, or the host's own
 * certificate, and a CSR → the host certificate that is its identity), heartbeats
 * (capacity, every VM's observed state, the blobs in the host's image store), cordon, and
 * the liveness monitor that marks silent hosts dead.
 */

import { randomUUID } from "node:crypto";
import type { Logger } from "pino";
import type {
  AgentHeartbeatPost,
  AgentHeartbeatReply,
  AgentLease,
  AgentRegisterPost,
  AgentRegisterResponse,
  QemuInfo,
} from "../api/types/agent.js";
import { NovaError } from "../lib/errors.js";
import { isSupportedQemu, qemuUnsupportedError } from "../lib/qemu-support.js";
import { certInfo } from "../security/pki.js";
import { DRAIN } from "../states/drain.js";
import { VERSION } from "../version.js";
import { latestDrainOfHost } from "./store/drains.js";
import { appendEvent } from "./store/events.js";
import { recordLoadSample } from "./store/host-load.js";
import {
  findHost,
  findHostByCertSerial,
  getHost,
  type HostRecord,
  markSilentHostsDead,
  recordHeartbeat,
  removeHost,
  setCordon,
  upsertHost,
} from "./store/hosts.js";
import { syncImageLocations } from "./store/images.js";
import { consumeJoinToken, createJoinToken, type JoinTokenInfo } from "./store/join-tokens.js";
import { listStoragePools, syncHostStoragePools } from "./store/storage-pools.js";
import type { Store } from "./store/store.js";
import { listVms, markHostVmsUnknown, setObserved, vmsToRelease } from "./store/vms.js";

/** What a heartbeat reply carries for HA besides `ok`: the lease, the pools to look for, the copies to release. */
export type HeartbeatHa = Pick<AgentHeartbeatReply, "lease" | "storagePools" | "release">;

/** Signs host certificates (the server's PKI). */
export interface HostCertIssuer {
  caPem: string;
  issueHostCert(csrPem: string, host: { id: string; name: string }): Promise<string>;
}

/** How a registering agent proved itself. */
export type RegistrationAuth = { joinToken: string } | { certSerial: string };

/** Host registration, heartbeats and liveness. */
export class HostService {
  private monitor: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: Store,
    private readonly wake: () => void,
    private readonly log: Logger,
    private readonly issuer: HostCertIssuer,
    /** This cluster's id, told to every registering agent (the owner its VMs' fencing tokens name). */
    private readonly clusterId: string,
    /** At most one load sample per host this often (heartbeats come every 2 s). @defaultValue 10000 */
    private readonly loadSampleEveryMs = 10_000,
    /** The HA lease each heartbeat reply grants (ha-restarter.ts leaseOf). */
    private readonly lease?: AgentLease,
  ) {}

  /**
   * Registers an agent and issues its host certificate from its CSR. A join token joins a
   * new host (used up, and only for the name it was made for); an existing host needs the
   * token to say `replace`, or the agent's own current certificate (re-registration,
   * renewal). Refuses (NOVA_QEMU_UNSUPPORTED) an agent that reports no QEMU or a QEMU
   * older than 7.2. Everything happens in one transaction: a refusal uses up nothing.
   */
  async register(input: AgentRegisterPost, auth: RegistrationAuth): Promise<AgentRegisterResponse> {
    checkRegisteringQemu(input);
    const { id, created, certificate } = await this.store.write(async (tx, emit) => {
      const existing = await findHost(tx, input.name);
      if ("joinToken" in auth) {
        const { replace } = await consumeJoinToken(tx, auth.joinToken, input.name);
        if (existing?.certificate && !replace) {
          throw new NovaError(
            "NOVA_CONFLICT",
            `Host ${input.name} is already joined. Its own agent re-registers with its certificate; to give the name to a new machine, make a token with: novacron host join-token ${input.name} --replace`,
            { details: { host: input.name } },
          );
        }
      } else {
        const self = await findHostByCertSerial(tx, auth.certSerial);
        if (!self) {
          throw new NovaError(
            "NOVA_UNAUTHENTICATED",
            "This host's certificate is not current (the host was removed or replaced). Join again with a new join token.",
          );
        }
        if (self.name !== input.name) {
          throw new NovaError(
            "NOVA_FORBIDDEN",
            `This certificate belongs to host ${self.name}; it cannot register as ${input.name}.`,
            { details: { host: self.name, requested: input.name } },
          );
        }
      }
      const hostId = existing?.id ?? randomUUID();
      const certificate = await this.issuer.issueHostCert(input.csr, { id: hostId, name: input.name });
      const info = certInfo(certificate);
      const result = await upsertHost(tx, {
        ...input,
        id: hostId,
        certificate: { serial: info.serial, fingerprint: info.fingerprint, notAfter: info.notAfter },
      });
      emit(
        await appendEvent(tx, {
          type: result.created ? "host.registered" : "host.reregistered",
          resourceType: "host",
          resourceId: result.id,
          data: {
            name: input.name,
            agentUrl: input.agentUrl,
            accel: input.capacity.accel,
            qemu: input.qemu?.version ?? null,
          },
        }),
      );
      return { ...result, certificate };
    });
    this.log.info({ host: input.name, created }, "agent registered");
    this.wake();
    return { hostId: id, certificate, caCertificate: this.issuer.caPem, clusterId: this.clusterId };
  }

  /**
   * Applies a heartbeat from the host `hostId`; returns what the reply carries for HA: the
   * renewed lease, the storage pools to look for, and the leftover copies of HA VMs
   * restarted elsewhere, which the agent must release.
   */
  async heartbeat(hostId: string, body: AgentHeartbeatPost): Promise<HeartbeatHa> {
    if (body.qemu && !isSupportedQemu(body.qemu)) {
      const host = await getHost(this.store.read, hostId);
      throw tooOld(host.name, body.qemu);
    }
    let changed = false;
    await this.store.write(async (tx, emit) => {
      const previous = await recordHeartbeat(tx, hostId, body.agentUrl, body.capacity, body.qemu);
      if (previous === "dead") {
        changed = true;
        emit(
          await appendEvent(tx, {
            type: "host.liveness",
            resourceType: "host",
            resourceId: hostId,
            data: { liveness: "alive" },
          }),
        );
      }
      const ours = new Set((await listVms(tx, { hostId })).map((v) => v.id));
      for (const vm of body.vms) {
        // An agent only speaks for VMs placed on its host.
        if (!ours.has(vm.id)) continue;
        if (await setObserved(tx, vm.id, vm.state, vm.reason, vm.generation)) changed = true;
      }
      await syncImageLocations(tx, hostId, body.imageDigests);
      if (body.load) {
        // Figures only for VMs placed here, as for their states.
        const vmsHere = Object.fromEntries(Object.entries(body.load.vms).filter(([id]) => ours.has(id)));
        await recordLoadSample(
          tx,
          hostId,
          body.capacity.vcpus,
          { cpuCores: body.load.cpuCores, vms: vmsHere },
          this.loadSampleEveryMs,
        );
      }
      if (body.storagePools) await syncHostStoragePools(tx, hostId, body.storagePools);
      const reported = new Set(body.vms.map((v) => v.id));
      for (const f of body.selfFenced ?? []) {
        // Only about a VM the agent holds; reported until the copy is released: recorded once per kill.
        if (!reported.has(f.id)) continue;
        const { rows } = await tx.query(
          "SELECT 1 FROM events WHERE resource_type = 'vm' AND resource_id = $1 AND type = 'ha.fenced' AND data->>'at' = $2 LIMIT 1",
          [f.id, f.at],
        );
        if (rows.length > 0) continue;
        emit(
          await appendEvent(tx, {
            type: "ha.fenced",
            resourceType: "vm",
            resourceId: f.id,
            data: { hostId, at: f.at },
          }),
        );
      }
    });
    if (changed) this.wake();
    const [release, pools] = await Promise.all([
      vmsToRelease(
        this.store.read,
        hostId,
        body.vms.map((v) => v.id),
        this.clusterId,
      ),
      listStoragePools(this.store.read),
    ]);
    for (const r of release) this.log.info({ vm: r.name, hostId }, "releasing an HA VM's leftover copy");
    return {
      ...(this.lease ? { lease: this.lease } : {}),
      storagePools: pools.slice(0, 256).map((p) => ({ id: p.id, path: p.path })),
      release: release.slice(0, 1024).map((r) => ({ id: r.id, fence: r.fence })),
    };
  }

  /** Sets or clears a host's cordon; returns the host. */
  async cordon(idOrName: string, cordoned: boolean): Promise<HostRecord> {
    const host = await getHost(this.store.read, idOrName);
    await this.store.write(async (tx, emit) => {
      const drain = cordoned ? undefined : await latestDrainOfHost(tx, host.id);
      if (drain && !DRAIN.isFinal(drain.state))
        throw new NovaError(
          "NOVA_DRAIN_ACTIVE",
          `Host ${host.name} is being drained (drain ${drain.id}); it stays cordoned until the drain ends. Cancel it first: novacron host drain ${host.name} --cancel`,
          { details: { host: host.name, drain: drain.id } },
        );
      emit(await setCordon(tx, host, cordoned));
    });
    return getHost(this.store.read, host.id);
  }

  /**
   * Makes a join token for host `name` (one use, expiring). `replace` lets it take over an
   * existing host of that name.
   */
  async createJoinToken(input: {
    name: string;
    ttlSeconds: number;
    replace: boolean;
    createdBy: string;
    caFingerprint: string;
  }): Promise<{ token: string; info: JoinTokenInfo }> {
    const existing = await findHost(this.store.read, input.name);
    if (existing?.certificate && !input.replace) {
      throw new NovaError(
        "NOVA_CONFLICT",
        `Host ${input.name} is already joined. Its agent keeps its identity across restarts; to give the name to a new machine, add --replace.`,
        { details: { host: input.name } },
      );
    }
    return this.store.write(async (tx, emit) => {
      const made = await createJoinToken(tx, { ...input, hostName: input.name });
      emit(
        await appendEvent(tx, {
          type: "host.join-token",
          resourceType: "host",
          resourceId: existing?.id ?? made.info.id,
          data: { name: input.name, replace: input.replace, expiresAt: made.info.expiresAt },
        }),
      );
      return made;
    });
  }

  /**
   * Removes a host that runs no VMs: its certificate is refused from now on (the agent
   * must join again with a new token to come back).
   */
  async remove(idOrName: string): Promise<{ id: string; name: string; deleted: boolean }> {
    const host = await getHost(this.store.read, idOrName);
    return this.store.write(async (tx, emit) => {
      const vms = await listVms(tx, { hostId: host.id });
      if (vms.length > 0) {
        throw new NovaError(
          "NOVA_CONFLICT",
          `Host ${host.name} still has ${vms.length} VM(s) (${vms
            .slice(0, 5)
            .map((v) => v.name)
            .join(", ")}${vms.length > 5 ? ", …" : ""}). Migrate or delete them first.`,
          { details: { host: host.name, vms: vms.length } },
        );
      }
      const { deleted } = await removeHost(tx, host.id);
      emit(
        await appendEvent(tx, {
          type: "host.removed",
          resourceType: "host",
          resourceId: host.id,
          data: { name: host.name, revokedSerial: host.certificate?.serial ?? null },
        }),
      );
      this.log.info({ host: host.name }, "host removed; its certificate is no longer accepted");
      return { id: host.id, name: host.name, deleted };
    });
  }

  /** Starts marking hosts dead after `timeoutMs` without a heartbeat. */
  startLivenessMonitor(timeoutMs: number, checkEveryMs = 1000): void {
    const check = async () => {
      await this.store.write(async (tx, emit) => {
        for (const host of await markSilentHostsDead(tx, timeoutMs)) {
          const reason = `host ${host.name} missed heartbeats since ${host.lastHeartbeatAt}; state unknown`;
          await markHostVmsUnknown(tx, host.id, reason);
          emit(
            await appendEvent(tx, {
              type: "host.liveness",
              resourceType: "host",
              resourceId: host.id,
              data: { name: host.name, liveness: "dead", reason },
            }),
          );
          this.log.warn({ host: host.name }, "host marked dead");
        }
      });
    };
    this.monitor = setInterval(() => {
      check().catch((err) => this.log.error({ err }, "liveness check failed"));
    }, checkEveryMs);
  }

  /** Stops the liveness monitor. */
  stopLivenessMonitor(): void {
    clearInterval(this.monitor);
  }
}

function tooOld(host: string, qemu: QemuInfo): NovaError {
  return qemuUnsupportedError(
    `Host ${host} runs QEMU ${qemu.version} (${qemu.binary}: ${qemu.text}), too old`,
    {
      host,
      found: qemu.version,
      binary: qemu.binary,
    },
  );
}

/**
 * An agent must say which QEMU it runs, and it must be 7.2 or newer: the agent checks this
 * itself at start, and the server checks again so an older agent cannot join anyway.
 */
export function checkRegisteringQemu(input: Pick<AgentRegisterPost, "name" | "agentVersion" | "qemu">): void {
  if (!input.qemu) {
    throw new NovaError(
      "NOVA_QEMU_UNSUPPORTED",
      `Host ${input.name}'s agent (version ${input.agentVersion || "unknown"}) did not report its QEMU version, so this server (version ${VERSION}) cannot tell whether its QEMU is 7.2 or newer. Upgrade the agent to ${VERSION}; it checks its QEMU at start.`,
      { details: { host: input.name, agentVersion: input.agentVersion, found: null } },
    );
  }
  if (!isSupportedQemu(input.qemu)) throw tooOld(input.name, input.qemu);
}
