/**
 * The VM controller: brings every VM's host in line with the server's state and moves
 * VMs along the state machine as agents report progress. Level-triggered (each pass looks
 * at everything, so a server restart just resumes), woken early by events. One pass at
 * a time; VMs within a pass are handled concurrently. Every power request carries the
 * VM's current fencing token (store/vms.ts vmFence): an agent refuses to run a VM
 * another cluster owns, or that it holds a newer token for (NOVA_ACP_FENCED).
 */
import type { Logger } from "pino";
import { describeError, isNovaError } from "../lib/errors.js";
import { WakeableLoop } from "../lib/wakeable-loop.js";
import type { AgentConnector } from "./agent-client.js";
import { decide } from "./reconcile-decision.js";
import { type HostRecord, listHosts } from "./store/hosts.js";
import { bootImage, type ImageRecord, listImages } from "./store/images.js";
import type { Store } from "./store/store.js";
import {
  deleteVmRow,
  getVm,
  listVms,
  recordMachineType,
  setObserved,
  transitionVm,
  type VmRecord,
  vmFence,
} from "./store/vms.js";

/** Reconciler options. */
export interface ReconcilerOptions {
  /** This cluster's id (its federation identity): the owner of the VMs whose row names none. */
  clusterId: string;
  /** Time between passes when nothing wakes it. @defaultValue 1000 */
  intervalMs?: number;
  /** How long to wait before repeating the same request to an agent. @defaultValue 5000 */
  resendAfterMs?: number;
}

/** Runs reconcile passes until stopped. */
export class Reconciler {
  private readonly loop: WakeableLoop;
  private readonly asked = new Map<string, number>();
  private readonly resendAfterMs: number;
  /** Set by start(): the next pass is this run's first (logged, for the failover benchmark). */
  private firstPass = false;

  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    private readonly agents: AgentConnector,
    private readonly options: ReconcilerOptions,
  ) {
    this.resendAfterMs = options.resendAfterMs ?? 5000;
    this.loop = new WakeableLoop({
      pass: () => this.pass(),
      intervalMs: options.intervalMs ?? 1000,
      onError: (err) => this.log.error({ err }, "reconcile pass failed"),
    });
  }

  /** Starts the loop. */
  start(): void {
    this.firstPass = true;
    this.loop.start();
  }

  /** Stops the loop and waits for the pass in flight. */
  async stop(): Promise<void> {
    await this.loop.stop();
  }

  /** Runs a pass soon (coalesced with one in flight). */
  wake(): void {
    this.loop.wake();
  }

  private async pass(): Promise<void> {
    // Forget requests old enough to be repeated anyway, so the map stays small.
    const horizon = Date.now() - this.resendAfterMs;
    for (const [key, at] of this.asked) if (at < horizon) this.asked.delete(key);
    const [vms, hosts, images] = await Promise.all([
      listVms(this.store.read),
      listHosts(this.store.read),
      listImages(this.store.read),
    ]);
    const hostById = new Map(hosts.map((h) => [h.id, h]));
    const imageById = new Map(images.map((i) => [i.id, i]));
    await Promise.all(vms.map((vm) => this.reconcileVm(vm, hostById, imageById)));
    if (this.firstPass) {
      // After a start, and so after a control-plane failover: the new leader has looked at everything.
      this.firstPass = false;
      this.log.info({ vms: vms.length, hosts: hosts.length }, "first reconcile pass done");
    }
  }

  private async reconcileVm(
    vm: VmRecord,
    hosts: Map<string, HostRecord>,
    images: Map<string, ImageRecord>,
  ): Promise<void> {
    const host = vm.hostId ? hosts.get(vm.hostId) : undefined;
    const key = (what: string) => `${vm.id}/${vm.generation}/${what}`;
    const decision = decide(vm, {
      hostAlive: host?.liveness === "alive",
      recentlyAsked: (what) => Date.now() - (this.asked.get(key(what)) ?? 0) < this.resendAfterMs,
    });
    if (decision.kind === "none") return;
    try {
      if (decision.kind === "transition") {
        await this.transition(vm, decision.to, decision.reason, decision);
        return;
      }
      if (!host) return;
      const agent = this.agents.client(host);
      if (decision.kind === "delete") {
        this.asked.set(key("delete"), Date.now());
        await agent.deleteVm(vm.id);
        await this.store.write(async (tx, emit) => {
          const current = await getVm(tx, vm.id, true);
          if (current.state === "deleting") emit(await deleteVmRow(tx, current));
        });
        return;
      }
      const image = images.get(vm.imageId);
      if (!image) throw new Error(`image ${vm.imageId} of VM ${vm.name} is missing`);
      this.asked.set(key(decision.power), Date.now());
      const machineType = await this.machineTypeFor(vm, host, decision.power);
      const observed = await agent.putVm(vm.id, {
        name: vm.name,
        generation: vm.generation,
        vcpus: vm.vcpus,
        memoryMiB: vm.memoryMiB,
        kernelArgs: vm.kernelArgs,
        image: bootImage(image),
        power: decision.power,
        ...(machineType ? { machineType } : {}),
        ...(vm.storagePoolId && vm.storagePoolPath
          ? { storagePool: { id: vm.storagePoolId, path: vm.storagePoolPath } }
          : {}),
        ...(vm.ha === "restart" ? { ha: true } : {}),
        fence: vmFence(vm, this.options.clusterId),
      });
      await setObserved(this.store.db, vm.id, observed.state, observed.reason, observed.generation);
      if (decision.onAccepted)
        await this.transition(vm, decision.onAccepted.to, decision.onAccepted.reason, {});
      this.wake();
    } catch (err) {
      // Unreachable hosts are retried on later passes; the agent refusing is final for
      // a VM that has not started yet.
      this.log.warn({ vm: vm.name, err: describeError(err) }, "reconcile step failed");
      const fenced = isNovaError(err, "NOVA_ACP_FENCED");
      if (
        !isNovaError(err, "NOVA_HOST_UNREACHABLE") &&
        (vm.state === "scheduled" || vm.state === "starting")
      ) {
        // A fenced start names the code: asking again cannot help (the host holds a newer
        // token, or another cluster's), and the user should see why at once.
        await this.transition(
          vm,
          "failed",
          `start failed on host ${vm.host}: ${fenced ? "NOVA_ACP_FENCED: " : ""}${describeError(err)}`,
          {},
        ).catch(() => {});
      }
    }
  }

  /**
   * The machine type to send with a power request. A VM created before machine types were
   * recorded gets, when it is next started, the concrete type its host's q35 alias means,
   * recorded for good; an agent that does not report its QEMU gets none (it runs `q35`,
   * as it always did, and would refuse a field it does not know).
   */
  private async machineTypeFor(
    vm: VmRecord,
    host: HostRecord,
    power: "running" | "stopped",
  ): Promise<string | undefined> {
    if (!host.qemu) return undefined;
    if (vm.machineType) return vm.machineType;
    if (power !== "running") return undefined;
    const recorded = await recordMachineType(this.store.db, vm.id, host.qemu.q35Alias);
    this.log.info({ vm: vm.name, machineType: recorded }, "machine type recorded at start");
    return recorded;
  }

  private async transition(
    vm: VmRecord,
    to: VmRecord["state"],
    reason: string,
    changes: { desiredState?: "running" | "stopped"; restartPending?: boolean; bumpGeneration?: boolean },
  ): Promise<void> {
    await this.store.write(async (tx, emit) => {
      const current = await getVm(tx, vm.id, true);
      // A user action since this pass read the VM wins: act only on what was decided on.
      if (current.generation !== vm.generation || current.state !== vm.state) return;
      emit(await transitionVm(tx, current, to, reason, changes));
    });
    this.wake();
  }
}
