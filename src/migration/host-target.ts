/**
 * A migration's target inside this cluster: another host, reached through its agent. The
 * image is copied from the source host's store when the target lacks it; the target's
 * QEMU waits paused (autostart off) until `finish` resumes it; completing moves the VM's
 * record to the target and then drops the source's paused copy.
 */
import type { Logger } from "pino";
import type { AgentIncomingEndpoints, AgentMigrationTuning } from "../api/types/agent.js";
import type { ClusterEvent } from "../api/types/events.js";
import type { AgentClient } from "../cluster/agent-client.js";
import type { Queryable } from "../cluster/store/db.js";
import { bootImage, getImage } from "../cluster/store/images.js";
import { moveVmToHost } from "../cluster/store/migrations.js";
import type { Store } from "../cluster/store/store.js";
import { transitionVm, type VmRecord, vmFence } from "../cluster/store/vms.js";
import { describeError, NovaError } from "../lib/errors.js";
import type { MigrationTarget, TargetAnswer } from "./target.js";

export class HostTarget implements MigrationTarget {
  constructor(
    private readonly store: Store,
    private readonly clusterId: string,
    private readonly log: Logger,
    private readonly host: { id: string; name: string },
    private readonly agent: AgentClient,
    private readonly migrationId: string,
  ) {}

  get label(): string {
    return this.host.name;
  }

  async hasImage(vm: VmRecord): Promise<boolean> {
    return (await getImage(this.store.read, vm.imageId)).hostIds.includes(this.host.id);
  }

  /** Copies the VM's image blobs from the source to the target, each checked by digest. */
  async copyImage(vm: VmRecord, source: AgentClient): Promise<void> {
    const image = await getImage(this.store.read, vm.imageId);
    const blobs: [string, "disk" | "kernel" | "initrd"][] = [[image.diskDigest, "disk"]];
    if (image.kernelDigest) blobs.push([image.kernelDigest, "kernel"]);
    if (image.initrdDigest) blobs.push([image.initrdDigest, "initrd"]);
    for (const [digest, kind] of blobs) {
      const { ticket, sizeBytes } = await source.blobTicket(digest);
      const url = `${source.url}/agent/v1/images/${encodeURIComponent(digest)}/blob?ticket=${encodeURIComponent(ticket)}`;
      const blob = await this.agent.pullBlob({
        digest,
        kind,
        url,
        ...(sizeBytes !== undefined ? { sizeBytes } : {}),
      });
      if (blob.digest !== digest)
        throw new NovaError(
          "NOVA_AGENT_ERROR",
          `copied ${kind} has digest ${blob.digest}, expected ${digest}`,
        );
    }
  }

  async prepare(
    vm: VmRecord,
    request: { migrationId: string; tuning: AgentMigrationTuning; transport: "auto" | "qemu" | "dwcp" },
  ): Promise<AgentIncomingEndpoints> {
    const image = await getImage(this.store.read, vm.imageId);
    return this.agent.prepareIncoming(vm.id, {
      ...request,
      spec: {
        name: vm.name,
        generation: vm.generation + 1,
        vcpus: vm.vcpus,
        memoryMiB: vm.memoryMiB,
        kernelArgs: vm.kernelArgs,
        image: bootImage(image),
        power: "running",
        // Recorded when the migration was accepted (migration-service.ts): the
        // destination starts exactly the machine the source runs.
        ...(vm.machineType ? { machineType: vm.machineType } : {}),
      },
    });
  }

  async finish(vm: VmRecord): Promise<TargetAnswer> {
    const observed = await this.agent.finishIncoming(
      vm.id,
      this.migrationId,
      vm.generation + 1,
      vmFence(vm, this.clusterId),
    );
    return {
      state: observed.state,
      reason: observed.reason,
      ...(observed.resumedAt === undefined ? {} : { resumedAt: observed.resumedAt }),
    };
  }

  async remove(vm: VmRecord): Promise<string> {
    await this.agent.deleteVm(vm.id);
    return `destination QEMU stopped and its disk removed on ${this.host.name}`;
  }

  async takeOver(tx: Queryable, vm: VmRecord, reason: string): Promise<ClusterEvent[]> {
    await moveVmToHost(tx, vm.id, this.host.id);
    return [await transitionVm(tx, { ...vm, host: this.host.name }, "running", reason)];
  }

  /** The target runs the VM: the paused source copy can go. Retried: leaving it costs only disk space. */
  async afterComplete(vm: VmRecord, source: AgentClient): Promise<void> {
    for (let attempt = 1; attempt <= 5; attempt++) {
      try {
        await source.releaseOutgoing(vm.id);
        return;
      } catch (err) {
        this.log.warn({ err: describeError(err), attempt }, "releasing the source copy failed; retrying");
        await new Promise((r) => setTimeout(r, 2000 * attempt));
      }
    }
  }
}
