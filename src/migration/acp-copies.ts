/**
 * ACP's copies on this cluster's hosts (federation/acp/ports.ts), through the agents: the
 * source's copy of a VM it hands over, and the destination's paused copy of a VM
 * arriving. What a copy is comes from its agent, which reads QEMU (GET …/copy); every
 * call here is idempotent, so the hand-off loop may repeat it after any restart.
 */
import type { HandoffVmSpec, SignedStatement } from "../api/types/acp.js";
import { agentMigrationTuning } from "../api/types/migrations.js";
import type { AgentClient, AgentConnector } from "../cluster/agent-client.js";
import { ClusterPlacement } from "../cluster/placement.js";
import type { IncomingHandoff, OutgoingHandoff } from "../cluster/store/acp.js";
import type { Queryable } from "../cluster/store/db.js";
import { getPeerById } from "../cluster/store/federation.js";
import { getHost } from "../cluster/store/hosts.js";
import { bootImage, getImage } from "../cluster/store/images.js";
import type { Store } from "../cluster/store/store.js";
import { findVm } from "../cluster/store/vms.js";
import type { CopyState } from "../federation/acp/plan.js";
import type {
  CopiedImage,
  FenceToken,
  ImageReadiness,
  Placement,
  SourceCopies,
  TargetCopies,
} from "../federation/acp/ports.js";
import { NovaError } from "../lib/errors.js";
import { ImageCopies } from "./acp-image-copy.js";
import { placeArrivingVm } from "./acp-place.js";
import type { PreparedDetail } from "./cluster-target.js";

export class AgentCopies implements SourceCopies, TargetCopies {
  private readonly images: ImageCopies;

  constructor(
    private readonly store: Store,
    private readonly agents: AgentConnector,
    private readonly placement = new ClusterPlacement(),
  ) {
    this.images = new ImageCopies(store, agents, placement);
  }

  private async agentOf(hostId: string): Promise<AgentClient> {
    return this.agents.client(await getHost(this.store.read, hostId));
  }

  /** The source copy's host: the VM's, while this cluster still has its row. */
  private async sourceAgent(h: OutgoingHandoff): Promise<AgentClient | undefined> {
    const vm = await findVm(this.store.read, h.vmId);
    return vm?.hostId ? this.agentOf(vm.hostId) : undefined;
  }

  // ── source ──

  async state(h: OutgoingHandoff | IncomingHandoff): Promise<CopyState> {
    const agent =
      "targetClusterId" in h
        ? await this.sourceAgent(h)
        : h.hostId
          ? await this.agentOf(h.hostId)
          : undefined;
    if (!agent) return "gone";
    return (await agent.copyState(h.vmId)).state;
  }

  async fence(h: OutgoingHandoff, token: FenceToken): Promise<void> {
    const agent = await this.sourceAgent(h);
    if (!agent) throw new NovaError("NOVA_INTERNAL", `VM ${h.vmName} has no host here to fence`);
    await agent.fenceVm(h.vmId, token);
  }

  async remove(h: OutgoingHandoff | IncomingHandoff): Promise<void> {
    if ("targetClusterId" in h) {
      await (await this.sourceAgent(h))?.releaseOutgoing(h.vmId);
      return;
    }
    if (h.hostId) await (await this.agentOf(h.hostId)).deleteVm(h.vmId);
  }

  async resume(h: OutgoingHandoff | IncomingHandoff, token: FenceToken): Promise<{ resumedAt?: number }> {
    if ("targetClusterId" in h) {
      const agent = await this.sourceAgent(h);
      if (!agent) throw new NovaError("NOVA_INTERNAL", `VM ${h.vmName} has no host here to resume on`);
      // The destination never runs its copy (aborted, or it gave the VM back): resuming
      // after a completed transfer is safe, so the source agent is told the target is gone.
      await agent.cancelOutgoing(h.vmId, h.migrationId ?? h.id, true, token);
      return {};
    }
    const vm = await findVm(this.store.read, h.vmId);
    if (!vm || !h.hostId) throw new NovaError("NOVA_INTERNAL", `arriving VM ${h.vmName} has no record here`);
    const observed = await (await this.agentOf(h.hostId)).finishIncoming(h.vmId, h.id, vm.generation, token);
    return observed.resumedAt === undefined ? {} : { resumedAt: observed.resumedAt };
  }

  // ── destination ──

  ensureImage(handoffId: string, sourceCaPem: string, spec: HandoffVmSpec): Promise<ImageReadiness> {
    return this.images.ensure(handoffId, sourceCaPem, spec);
  }

  place(tx: Queryable, spec: HandoffVmSpec, copied?: CopiedImage): Promise<Placement> {
    return placeArrivingVm(tx, this.placement, spec, copied);
  }

  async start(h: IncomingHandoff, _prepare: SignedStatement): Promise<Record<string, unknown>> {
    const vm = await findVm(this.store.read, h.vmId);
    const source = await getPeerById(this.store.read, h.sourceClusterId);
    if (!vm || !h.hostId) throw new NovaError("NOVA_INTERNAL", `arriving VM ${h.vmName} has no record here`);
    if (!source) throw new NovaError("NOVA_FED_PEER_UNKNOWN", "the source cluster was removed");
    const host = await getHost(this.store.read, h.hostId);
    const image = await getImage(this.store.read, vm.imageId);
    const endpoints = await this.agents.client(host).prepareIncoming(vm.id, {
      migrationId: h.id,
      tuning: agentMigrationTuning({ transport: "dwcp" }),
      transport: "dwcp",
      spec: {
        name: vm.name,
        generation: vm.generation,
        vcpus: vm.vcpus,
        memoryMiB: vm.memoryMiB,
        kernelArgs: vm.kernelArgs,
        image: bootImage(image),
        power: "running",
        ...(vm.machineType ? { machineType: vm.machineType } : {}),
      },
      // The source cluster's hosts present certificates of its CA, for this migration only.
      peerCaPem: source.caPem,
    });
    return { host: host.name, endpoints } satisfies PreparedDetail as unknown as Record<string, unknown>;
  }
}
