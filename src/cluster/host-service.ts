/**
 * Agents joining and reporting: registration (join token → host credential), heartbeats
 * (capacity, every VM's observed state, the blobs in the host's image store), cordon, and
 * the liveness monitor that marks silent hosts dead.
 */
import type { Logger } from "pino";
import type {
  AgentHeartbeatPost,
  AgentRegisterPost,
  AgentRegisterResponse,
  QemuInfo,
} from "../api/types/agent.js";
import { NovaError } from "../lib/errors.js";
import { isSupportedQemu, qemuUnsupportedError } from "../lib/qemu-support.js";
import { VERSION } from "../version.js";
import { appendEvent } from "./store/events.js";
import {
  getHost,
  type HostRecord,
  markSilentHostsDead,
  recordHeartbeat,
  setCordon,
  upsertHost,
} from "./store/hosts.js";
import { syncImageLocations } from "./store/images.js";
import type { Store } from "./store/store.js";
import { generateToken } from "./store/tokens.js";
import { listVms, markHostVmsUnknown, setObserved } from "./store/vms.js";

/** Host registration, heartbeats and liveness. */
export class HostService {
  private monitor: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: Store,
    private readonly wake: () => void,
    private readonly log: Logger,
  ) {}

  /**
   * Registers (or re-registers) an agent and issues its host credential. Refuses
   * (NOVA_QEMU_UNSUPPORTED) an agent that reports no QEMU or a QEMU older than 7.2.
   */
  async register(input: AgentRegisterPost): Promise<AgentRegisterResponse> {
    checkRegisteringQemu(input);
    const hostToken = generateToken("nvh");
    const { id, created } = await this.store.write(async (tx, emit) => {
      const result = await upsertHost(tx, { ...input, agentToken: hostToken });
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
      return result;
    });
    this.log.info({ host: input.name, created }, "agent registered");
    this.wake();
    return { hostId: id, hostToken };
  }

  /** Applies a heartbeat from the host `hostId`. */
  async heartbeat(hostId: string, body: AgentHeartbeatPost): Promise<void> {
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
    });
    if (changed) this.wake();
  }

  /** Sets or clears a host's cordon; returns the host. */
  async cordon(idOrName: string, cordoned: boolean): Promise<HostRecord> {
    const host = await getHost(this.store.read, idOrName);
    await this.store.write(async (tx, emit) => {
      await setCordon(tx, host.id, cordoned);
      emit(
        await appendEvent(tx, {
          type: "host.cordon",
          resourceType: "host",
          resourceId: host.id,
          data: { name: host.name, cordoned },
        }),
      );
    });
    return getHost(this.store.read, host.id);
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
