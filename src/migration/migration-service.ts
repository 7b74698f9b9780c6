/**
 * User operations on migrations: start one (validated, target chosen or checked, VM moved
 * to `migrating` and the migration queued in one transaction) and cancel one.
 */
import type { MigrationOptions, MigrationsPost } from "../api/types/migrations.js";
import { ClusterPlacement, lockPlacement } from "../cluster/placement.js";
import { listOutgoingOfVm } from "../cluster/store/acp.js";
import { type PeerRow, peerHasHostNamed, peerHasVmNamed } from "../cluster/store/federation.js";
import { getHost, type HostRecord } from "../cluster/store/hosts.js";
import {
  getMigration,
  insertMigration,
  type MigrationRecord,
  requestCancel,
} from "../cluster/store/migrations.js";
import type { Store } from "../cluster/store/store.js";
import { getVm, recordMachineType, transitionVm } from "../cluster/store/vms.js";
import { checkOwnedHere } from "../cluster/vm-ownership.js";
import { vmPlacementRequest } from "../cluster/vm-service.js";
import { NovaError } from "../lib/errors.js";
import { compareMajorMinor, machineTypeSupport } from "../lib/qemu-support.js";
import { currentTraceparent } from "../lib/tracing.js";
import { HANDOFF_SOURCE } from "../states/handoff.js";
import { assertActionAllowed } from "../states/vm.js";

/** What a migration to another cluster needs to know about the federation. */
export interface PeerClusters {
  /** This cluster's name. */
  selfName: string;
  /** A live peer by name, and whether it is stale; NOVA_FED_PEER_UNKNOWN when there is none. */
  peer(name: string): Promise<{ row: PeerRow; stale: boolean }>;
}

/** Starts and cancels migrations. */
export class MigrationService {
  constructor(
    private readonly store: Store,
    private readonly wake: () => void,
    /** The federation, for migrations to other clusters; absent: they are refused. */
    private readonly peers?: PeerClusters,
    /** Chooses and checks targets (ITP with the cluster's policy). */
    private readonly placement = new ClusterPlacement(),
  ) {}

  /**
   * Validates and queues a migration of a running VM. `hints.avoidHosts` (a drain retrying
   * a failed move) keeps placement off those hosts when another one fits.
   */
  async create(
    vmIdOrName: string,
    input: MigrationsPost,
    hints: { avoidHosts?: readonly string[] } = {},
  ): Promise<MigrationRecord> {
    if (input.targetCluster !== undefined && input.targetCluster !== this.peers?.selfName)
      return this.createCrossCluster(vmIdOrName, input.targetCluster, input);
    validateOptions(input.options ?? {});
    const id = await this.store.write(async (tx, emit) => {
      await lockPlacement(tx);
      const vm = await getVm(tx, vmIdOrName, true);
      await checkOwnedHere(tx, vm, "migrate");
      if (vm.state === "stopped") {
        throw new NovaError(
          "NOVA_ILLEGAL_STATE",
          `Cannot migrate VM ${vm.name}: it is stopped. Live migration moves running VMs; start it first (cold migration of stopped VMs is not supported yet).`,
          {
            details: { vm: vm.name, state: vm.state, action: "migrate", allowedActions: ["start", "delete"] },
          },
        );
      }
      assertActionAllowed(vm.name, vm.state, "migrate");
      if (vm.storagePoolId) {
        // Live migration copies the disk into the target's own overlay; a pool disk is the
        // same file on both hosts, so the copy would overwrite the disk the VM runs on.
        throw new NovaError(
          "NOVA_UNPROCESSABLE",
          `Cannot migrate VM ${vm.name}: its disk is in storage pool ${vm.storagePool}, and live migration of a VM on a shared pool is not supported yet (it would copy the disk onto itself). Keep it where it is (a drain cannot move it either).`,
          { details: { vm: vm.name, storagePool: vm.storagePool } },
        );
      }
      if (!vm.hostId) throw new NovaError("NOVA_INTERNAL", `VM ${vm.name} is running but has no host`);
      const source = await getHost(tx, vm.hostId);
      const options = input.options ?? {};
      const view = await this.placement.load(tx);
      const hosts = view.hosts;
      // What the VM runs as; a VM from before machine types were recorded runs as what
      // q35 means on its host.
      const machineType = vm.machineType ?? source.qemu?.q35Alias;
      if (!machineType) {
        throw new NovaError(
          "NOVA_MACHINE_TYPE_UNSUPPORTED",
          `Cannot migrate VM ${vm.name}: it was created before machine types were recorded and its host ${source.name}'s agent does not report its QEMU, so its machine type is unknown. Upgrade the agent on ${source.name} first.`,
          { details: { vm: vm.name, source: source.name, machineType: null } },
        );
      }
      // A migration copies the image to its target when it lacks it: any host will do.
      const request = {
        ...vmPlacementRequest(vm),
        imageHostIds: null,
        machineType,
        fromHostId: source.id,
        live: true,
      };
      let targetId: string;
      if (input.targetHost) {
        const target = await getHost(tx, input.targetHost);
        if (target.id === source.id) {
          throw new NovaError(
            "NOVA_UNPROCESSABLE",
            `VM ${vm.name} already runs on ${source.name}; pick another host as the target.`,
            {
              details: { vm: vm.name, host: source.name },
            },
          );
        }
        assertMachineTypeRunsOn(vm.name, machineType, source, [target]);
        // Every check placement makes, for this one host (its image can be copied).
        targetId = view.placeOn(request, target.id).id;
      } else {
        const others = hosts.filter((h) => h.id !== source.id);
        // Hosts that could take the VM but for their QEMU: refuse naming the machine type,
        // rather than "no room".
        const usable = others.filter((h) => h.liveness === "alive" && !h.cordoned);
        const runnable = usable.filter((h) => h.qemu && machineTypeSupport(machineType, h.qemu).ok);
        if (usable.length > 0 && runnable.length === 0) {
          assertMachineTypeRunsOn(vm.name, machineType, source, usable);
        }
        targetId = view.placeAvoiding(request, hints.avoidHosts ?? []).id;
      }
      // From here on the migration is accepted: a VM without a recorded type gets it now,
      // so the destination starts exactly what the source runs.
      if (!vm.machineType) await recordMachineType(tx, vm.id, machineType);
      emit(
        await transitionVm(
          tx,
          vm,
          "migrating",
          `migration to ${hosts.find((h) => h.id === targetId)?.name} queued`,
        ),
      );
      const { id, event } = await insertMigration(tx, {
        vmId: vm.id,
        vmName: vm.name,
        sourceHostId: source.id,
        target: { hostId: targetId },
        options,
        transport: "qemu",
        traceParent: currentTraceparent(),
      });
      emit(event);
      return id;
    });
    this.wake();
    return getMigration(this.store.read, id);
  }

  /**
   * A live migration to a peer cluster (docs/federation.md §10): refused, with nothing
   * changed, for an unknown, quarantined or stale peer, a VM this cluster does not own or
   * whose ownership is being handed over already, a VM not running, a name the
   * destination already uses, or options only QEMU's own transport has. The destination
   * checks again, authoritatively, when it prepares.
   */
  private async createCrossCluster(
    vmIdOrName: string,
    clusterName: string,
    input: MigrationsPost,
  ): Promise<MigrationRecord> {
    if (!this.peers)
      throw new NovaError(
        "NOVA_UNPROCESSABLE",
        "This server does not take part in a federation; migrate inside the cluster.",
      );
    const o = input.options ?? {};
    const refuse = (message: string, field: string) =>
      new NovaError("NOVA_UNPROCESSABLE", `Invalid migration to cluster ${clusterName}: ${message}`, {
        details: { field },
      });
    if (o.transport === "qemu")
      throw refuse(
        "between clusters a VM moves over DWCP only (QEMU's transport trusts one cluster's CA)",
        "transport",
      );
    if (o.postcopy)
      throw refuse("post-copy is not offered between clusters: a failure would lose the VM", "postcopy");
    if (o.multifdChannels)
      throw refuse(
        "multifd is QEMU's own transport; between clusters DWCP carries the VM",
        "multifdChannels",
      );
    const { row: peer, stale } = await this.peers.peer(clusterName);
    if (peer.state === "quarantined")
      throw new NovaError(
        "NOVA_FED_QUARANTINED",
        `Cluster ${peer.name} is quarantined (${peer.quarantineReason}); no VM is handed to it.`,
        { details: { cluster: peer.name } },
      );
    if (stale)
      throw new NovaError(
        "NOVA_FED_PEER_UNREACHABLE",
        `Cluster ${peer.name} has not been heard from recently (${peer.lastError || "no contact"}); a hand-off needs it answering. See novacron cluster list.`,
        { details: { cluster: peer.name } },
      );
    const id = await this.store.write(async (tx, emit) => {
      const vm = await getVm(tx, vmIdOrName, true);
      await checkOwnedHere(tx, vm, "migrate");
      const open = (await listOutgoingOfVm(tx, vm.id)).find((h) => !HANDOFF_SOURCE.isFinal(h.state));
      if (open)
        throw new NovaError(
          "NOVA_ACP_OWNER_UNCERTAIN",
          `VM ${vm.name} is in a hand-off to another cluster already (${open.id}, ${open.state}).`,
          { details: { vm: vm.name, handoff: open.id, state: open.state } },
        );
      if (vm.state === "stopped")
        throw new NovaError(
          "NOVA_ILLEGAL_STATE",
          `Cannot migrate VM ${vm.name}: it is stopped. Live migration moves running VMs; start it first.`,
          { details: { vm: vm.name, state: vm.state, action: "migrate" } },
        );
      assertActionAllowed(vm.name, vm.state, "migrate");
      if (!vm.hostId) throw new NovaError("NOVA_INTERNAL", `VM ${vm.name} is running but has no host`);
      if (await peerHasVmNamed(tx, peer.id, vm.name, vm.id))
        throw new NovaError(
          "NOVA_FED_NAME_CLASH",
          `Cluster ${peer.name} already has a VM named ${vm.name}; rename or delete one of them first.`,
          { details: { vm: vm.name, cluster: peer.name } },
        );
      if (input.targetHost && !(await peerHasHostNamed(tx, peer.id, input.targetHost)))
        throw new NovaError("NOVA_NOT_FOUND", `Cluster ${peer.name} has no host ${input.targetHost}.`, {
          details: { cluster: peer.name, host: input.targetHost },
        });
      const source = await getHost(tx, vm.hostId);
      const machineType = vm.machineType ?? source.qemu?.q35Alias;
      if (machineType && !vm.machineType) await recordMachineType(tx, vm.id, machineType);
      emit(await transitionVm(tx, vm, "migrating", `migration to cluster ${peer.name} queued`));
      const { id, event } = await insertMigration(tx, {
        vmId: vm.id,
        vmName: vm.name,
        sourceHostId: source.id,
        target: { clusterId: peer.id, clusterName: peer.name, hostName: input.targetHost ?? null },
        options: { ...o, transport: "dwcp" },
        transport: "dwcp",
        traceParent: currentTraceparent(),
      });
      emit(event);
      return id;
    });
    this.wake();
    return getMigration(this.store.read, id);
  }

  /** Asks for a migration to be cancelled and rolled back. */
  async cancel(id: string): Promise<MigrationRecord> {
    const m = await getMigration(this.store.read, id);
    if (m.state === "completed" || m.state === "failed" || m.state === "cancelled") {
      throw new NovaError("NOVA_ILLEGAL_STATE", `Migration ${id} already ended (${m.state}).`, {
        details: { state: m.state },
      });
    }
    if (m.state === "switching-over") {
      throw new NovaError(
        "NOVA_ILLEGAL_STATE",
        `Migration ${id} is switching over: the target may already hold the VM's latest state, so it can no longer be cancelled.`,
        { details: { state: m.state } },
      );
    }
    await requestCancel(this.store.db, id);
    this.wake();
    return getMigration(this.store.read, id);
  }
}

function qemuOf(host: HostRecord): string {
  return host.qemu ? `QEMU ${host.qemu.version}` : "an unknown QEMU (its agent does not report it)";
}

/**
 * Refuses (NOVA_MACHINE_TYPE_UNSUPPORTED, before anything changes) a migration whose
 * destination QEMU cannot run the VM's machine type: the destination QEMU would fail to
 * load the migration stream. Names the machine type, both hosts' QEMU versions, and how
 * to make a VM movable. `candidates` is the target, or (no target given) every host tried;
 * it passes when any of them can run the VM.
 */
export function assertMachineTypeRunsOn(
  vmName: string,
  machineType: string,
  source: HostRecord,
  candidates: readonly HostRecord[],
): void {
  const refusals = candidates.flatMap((h) => {
    if (!h.qemu) return [{ host: h, reason: `${h.name}'s agent does not report its QEMU version` }];
    const support = machineTypeSupport(machineType, h.qemu);
    return support.ok ? [] : [{ host: h, reason: `on ${h.name} ${support.reason}` }];
  });
  if (refusals.length < candidates.length) return;
  const targets = candidates.map((h) => `${h.name} (${qemuOf(h)})`).join(", ");
  const oldest = candidates
    .flatMap((h) => (h.qemu ? [h.qemu] : []))
    .reduce<HostRecord["qemu"]>((a, b) => (a && compareMajorMinor(a, b) <= 0 ? a : b), null);
  const fix = oldest
    ? ` A VM keeps its machine type for life: to make a VM movable to hosts with QEMU ${oldest.major}.${oldest.minor}, create it with --machine-type ${oldest.q35Alias} (machineType in the API) or older.`
    : " Upgrade that host's agent, then try again.";
  throw new NovaError(
    "NOVA_MACHINE_TYPE_UNSUPPORTED",
    `Cannot migrate VM ${vmName} from ${source.name} (${qemuOf(source)}) to ${targets}: the VM's machine type is ${machineType}, and ${refusals.map((r) => r.reason).join("; ")}.${fix}`,
    {
      details: {
        vm: vmName,
        machineType,
        source: { host: source.name, qemu: source.qemu?.version ?? null },
        targets: candidates.map((h) => ({
          host: h.name,
          qemu: h.qemu?.version ?? null,
          newestMachineType: h.qemu?.q35Alias ?? null,
        })),
      },
    },
  );
}

/** Refuses option combinations QEMU would reject later, after the destination was prepared. */
function validateOptions(o: MigrationOptions): void {
  const bad = (message: string, field: string): NovaError =>
    new NovaError("NOVA_UNPROCESSABLE", `Invalid migration options: ${message}`, { details: { field } });
  if (o.multifdCompression && !o.multifdChannels)
    throw bad("multifdCompression needs multifdChannels (e.g. 4)", "multifdCompression");
  if (o.multifdChannels && o.postcopy)
    throw bad("multifd cannot be combined with post-copy (QEMU 7.2); choose one", "multifdChannels");
  if (o.transport === "dwcp" && o.multifdChannels)
    throw bad(
      "multifd is QEMU's own multi-connection transport; it does not apply with transport dwcp",
      "multifdChannels",
    );
  if (o.transport === "dwcp" && o.postcopy)
    throw bad("post-copy runs over QEMU's own transport only; use transport qemu (or auto)", "postcopy");
}
