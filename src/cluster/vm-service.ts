/**
 * User operations on VMs: create (placed synchronously, so "no room" is a 422 at once and
 * nothing is created), start, stop, restart, delete. Each checks the state machine under
 * the VM's row lock, records the transition and its event, and wakes the reconciler,
 * which does the work on the host.
 */
import type { ClusterEvent } from "../api/types/events.js";
import type { PlacementExplanation, VmDryRun } from "../api/types/placement.js";
import type { VmsPost } from "../api/types/vms.js";
import { NovaError } from "../lib/errors.js";
import {
  compareMajorMinor,
  formatQemuVersion,
  machineTypeSupport,
  validateMachineType,
} from "../lib/qemu-support.js";
import { assertActionAllowed } from "../states/vm.js";
import { ClusterPlacement, lockPlacement, type PlacementRequest } from "./placement.js";
import type { Queryable } from "./store/db.js";
import { getHost, type HostRecord } from "./store/hosts.js";
import { getImage } from "./store/images.js";
import { addGroupMembers, getPlacementGroup } from "./store/placement-groups.js";
import { getStoragePool } from "./store/storage-pools.js";
import type { Store } from "./store/store.js";
import { getVm, insertVm, setVmHa, transitionVm, type VmRecord } from "./store/vms.js";
import { checkOwnedHere } from "./vm-ownership.js";

// Serialises placement decisions so two creates cannot both take a host's last memory.

/** User operations on VMs. */
export class VmService {
  constructor(
    private readonly store: Store,
    private readonly wake: () => void,
    private readonly placement = new ClusterPlacement(),
  ) {}

  /**
   * Validates, places and records a new VM; returns it. The VM's machine type is fixed
   * here: the pinned one (placement only considers hosts whose QEMU offers it), else the
   * concrete type `q35` means on the host it is placed on.
   */
  async create(input: VmsPost): Promise<VmRecord> {
    const start = input.start ?? true;
    const ha = input.ha ?? "none";
    if (ha === "restart" && input.storagePool === undefined) throw haLocalDisk(input.name);
    const id = await this.store.write(async (tx, emit) => {
      const { req, view, pinned, imageId, pool } = await this.prepare(tx, input);
      const host = view.place(req);
      // Placement only picks hosts that reported their QEMU.
      const machineType = pinned ?? host.qemu!.q35Alias;
      const { id, event } = await insertVm(tx, {
        name: input.name,
        imageId,
        vcpus: req.vcpus,
        memoryMiB: req.memoryMiB,
        kernelArgs: input.kernelArgs ?? "",
        machineType,
        desiredState: start ? "running" : "stopped",
        hostId: host.id,
        state: start ? "scheduled" : "stopped",
        hostSelector: req.hostSelector ?? {},
        requiredSite: req.site ?? null,
        ...(pool ? { storagePoolId: pool.id } : {}),
        ha,
      });
      emit(event);
      for (const name of input.groups ?? [])
        emit(await addGroupMembers(tx, await getPlacementGroup(tx, name), [{ id, name: input.name }]));
      return id;
    });
    this.wake();
    return getVm(this.store.read, id);
  }

  /**
   * What `create` would do, with nothing created: the chosen host (null when none can take
   * the VM) and every host's verdict. The same refusals as `create` for bad input.
   */
  async dryRun(input: VmsPost): Promise<VmDryRun> {
    const explanation = await this.store.write(async (tx) => {
      const { req, view } = await this.prepare(tx, input);
      return view.explain(req);
    });
    return { dryRun: true, vm: input.name, host: explanation.chosen, explanation };
  }

  /** Where a VM could move now: every other host's verdict and scores (placement explain). */
  async explainMove(idOrName: string): Promise<PlacementExplanation> {
    const vm = await getVm(this.store.read, idOrName);
    const view = await this.placement.load(this.store.read);
    const source = view.hosts.find((h) => h.id === vm.hostId);
    const machineType = vm.machineType ?? source?.qemu?.q35Alias;
    return view.explain({
      ...vmPlacementRequest(vm),
      imageHostIds: null,
      ...(machineType ? { machineType } : {}),
      ...(vm.hostId ? { fromHostId: vm.hostId, live: true } : {}),
    });
  }

  /** Validates a create and reads the cluster under the placement lock. */
  private async prepare(tx: Queryable, input: VmsPost) {
    const memoryMiB = input.memoryMiB ?? 256;
    if (input.machineType !== undefined) validateMachineType(input.machineType);
    const pinned = input.machineType === "q35" ? undefined : input.machineType;
    await lockPlacement(tx);
    const image = await getImage(tx, input.image);
    if (memoryMiB < image.minMemoryMiB) {
      throw new NovaError(
        "NOVA_UNPROCESSABLE",
        `VM ${input.name} asks for ${memoryMiB} MiB but image ${image.name} needs at least ${image.minMemoryMiB} MiB. Use --memory ${image.minMemoryMiB} or more.`,
        { details: { memoryMiB, minMemoryMiB: image.minMemoryMiB, image: image.name } },
      );
    }
    const pool = input.storagePool === undefined ? undefined : await getStoragePool(tx, input.storagePool);
    const view = await this.placement.load(tx, { vm: input.name, groups: input.groups ?? [] });
    if (pinned) refuseUnrunnableMachineType(input.name, pinned, view.hosts);
    const req: PlacementRequest = {
      name: input.name,
      memoryMiB,
      vcpus: input.vcpus ?? 1,
      imageName: image.name,
      imageHostIds: image.hostIds,
      hostSelector: input.hostSelector ?? {},
      site: input.site ?? null,
      ...(pinned ? { machineType: pinned } : {}),
      // A disk in a pool: only the hosts that see the pool can open it.
      ...(pool ? { storagePool: { name: pool.name, hostIds: pool.hostIds } } : {}),
    };
    return { req, view, pinned, imageId: image.id, pool };
  }

  /**
   * Changes whether the VM is restarted elsewhere when its host dies. `restart` needs the
   * VM's disk in a storage pool (NOVA_HA_LOCAL_DISK otherwise, nothing changed).
   */
  async setHa(idOrName: string, ha: "none" | "restart"): Promise<VmRecord> {
    const id = await this.store.write(async (tx, emit) => {
      const vm = await getVm(tx, idOrName, true);
      await checkOwnedHere(tx, vm, "update");
      if (ha === "restart" && !vm.storagePoolId) throw haLocalDisk(vm.name);
      if (vm.ha !== ha) emit(await setVmHa(tx, vm, ha));
      return vm.id;
    });
    this.wake();
    return getVm(this.store.read, id);
  }

  /** Starts a stopped or failed VM on its host. */
  async start(idOrName: string): Promise<VmRecord> {
    return this.act(idOrName, "start", async (tx, vm) => {
      if (!vm.hostId) throw new NovaError("NOVA_INTERNAL", `VM ${vm.name} has no host`);
      await lockPlacement(tx);
      const host = await getHost(tx, vm.hostId);
      if (vm.machineType && host.qemu) {
        // The host's QEMU may have been replaced by an older one since the VM last ran.
        const support = machineTypeSupport(vm.machineType, host.qemu);
        if (!support.ok) {
          throw new NovaError(
            "NOVA_MACHINE_TYPE_UNSUPPORTED",
            `Cannot start VM ${vm.name} on ${host.name}: its machine type is ${vm.machineType} and ${support.reason}. Install a QEMU that offers ${vm.machineType} on ${host.name} (docs/operations.md, "Supported QEMU versions").`,
            {
              details: {
                vm: vm.name,
                machineType: vm.machineType,
                host: host.name,
                hostQemu: formatQemuVersion(host.qemu),
              },
            },
          );
        }
      }
      if (host.liveness !== "alive") {
        throw new NovaError(
          "NOVA_NO_CAPACITY",
          `Cannot start VM ${vm.name}: its host ${host.name} is dead (no heartbeat since ${host.lastHeartbeatAt}).`,
          {
            details: { host: host.name, liveness: host.liveness },
          },
        );
      }
      if (host.freeMemoryMiB < vm.memoryMiB) {
        throw new NovaError(
          "NOVA_NO_CAPACITY",
          `Cannot start VM ${vm.name}: it needs ${vm.memoryMiB} MiB and its host ${host.name} has ${host.freeMemoryMiB} MiB free.`,
          { details: { neededMemoryMiB: vm.memoryMiB, host: host.name, freeMemoryMiB: host.freeMemoryMiB } },
        );
      }
      return transitionVm(tx, vm, "starting", "start requested", {
        desiredState: "running",
        bumpGeneration: true,
      });
    });
  }

  /** Stops a VM (graceful ACPI shutdown, then hard stop after the agent's grace period). */
  async stop(idOrName: string): Promise<VmRecord> {
    return this.act(idOrName, "stop", (tx, vm) =>
      // A VM whose QEMU was never started has nothing to shut down.
      vm.state === "scheduled"
        ? transitionVm(tx, vm, "stopped", "stopped before it started", {
            desiredState: "stopped",
            bumpGeneration: true,
          })
        : transitionVm(tx, vm, "stopping", "stop requested", {
            desiredState: "stopped",
            bumpGeneration: true,
          }),
    );
  }

  /** Restarts a running VM: a full stop, then start, on the same host. */
  async restart(idOrName: string): Promise<VmRecord> {
    return this.act(idOrName, "restart", (tx, vm) =>
      transitionVm(tx, vm, "stopping", "restart requested", {
        desiredState: "running",
        restartPending: true,
        bumpGeneration: true,
      }),
    );
  }

  /** Deletes a VM: the agent stops it and removes its disk, then the row goes. */
  async delete(idOrName: string): Promise<VmRecord> {
    return this.act(idOrName, "delete", (tx, vm) =>
      transitionVm(tx, vm, "deleting", "delete requested", { desiredState: "deleted", bumpGeneration: true }),
    );
  }

  private async act(
    idOrName: string,
    action: "start" | "stop" | "restart" | "delete",
    apply: (tx: Queryable, vm: VmRecord) => Promise<ClusterEvent>,
  ): Promise<VmRecord> {
    const id = await this.store.write(async (tx, emit) => {
      const vm = await getVm(tx, idOrName, true);
      await checkOwnedHere(tx, vm, action);
      assertActionAllowed(vm.name, vm.state, action);
      emit(await apply(tx, vm));
      return vm.id;
    });
    this.wake();
    return getVm(this.store.read, id);
  }
}

/**
 * A pinned machine type that no usable (alive, uncordoned, QEMU reported) host offers is a
 * NOVA_MACHINE_TYPE_UNSUPPORTED naming each host's QEMU, not "no room": more memory would
 * not help, a newer QEMU (or an older machine type) would.
 */
function refuseUnrunnableMachineType(
  vmName: string,
  machineType: string,
  hosts: readonly HostRecord[],
): void {
  const usable = hosts.filter((h) => h.liveness === "alive" && !h.cordoned && h.qemu);
  if (usable.length === 0) return; // placement explains that there is no usable host
  if (usable.some((h) => machineTypeSupport(machineType, h.qemu!).ok)) return;
  const versions = usable.map((h) => `${h.name}: QEMU ${h.qemu!.version} (newest ${h.qemu!.q35Alias})`);
  throw new NovaError(
    "NOVA_MACHINE_TYPE_UNSUPPORTED",
    `No host can run VM ${vmName} as machine type ${machineType}: ${versions.join("; ")}. Pick a machine type every host offers (e.g. --machine-type ${oldestNewest(usable)}, machineType in the API), or add a host with a newer QEMU.`,
    {
      details: {
        vm: vmName,
        machineType,
        hosts: usable.map((h) => ({ host: h.name, qemu: h.qemu!.version, newest: h.qemu!.q35Alias })),
      },
    },
  );
}

/** The oldest of the hosts' newest q35 types: one every host offers. */
function oldestNewest(hosts: readonly HostRecord[]): string {
  return hosts.map((h) => h.qemu!).reduce((a, b) => (compareMajorMinor(a, b) <= 0 ? a : b)).q35Alias;
}

/** What placement needs of a stored VM (its constraints as created). */
export function vmPlacementRequest(vm: VmRecord): Omit<PlacementRequest, "imageHostIds"> {
  return {
    name: vm.name,
    memoryMiB: vm.memoryMiB,
    vcpus: vm.vcpus,
    imageName: vm.image,
    hostSelector: vm.hostSelector,
    site: vm.requiredSite,
  };
}

/** An HA VM asked for on a host's local disk: no other host could open its disk. */
function haLocalDisk(vmName: string): NovaError {
  return new NovaError(
    "NOVA_HA_LOCAL_DISK",
    `VM ${vmName} cannot have ha: restart with its disk on its host's local disk: when the host dies, the disk dies with it and no other host can restart the VM. Keep its disk in a shared storage pool (create it with --storage-pool NAME; list pools with novacron storage pool list), or leave HA off. Nothing was changed.`,
    { details: { vm: vmName, ha: "restart", storagePool: null } },
  );
}
