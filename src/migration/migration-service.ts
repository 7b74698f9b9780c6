/**
 * User operations on migrations: start one (validated, target chosen or checked, VM moved
 * to `migrating` and the migration queued in one transaction) and cancel one.
 */
import type { MigrationOptions, MigrationsPost } from "../api/types/migrations.js";
import { getHost, listHosts } from "../cluster/store/hosts.js";
import {
  getMigration,
  insertMigration,
  type MigrationRecord,
  requestCancel,
} from "../cluster/store/migrations.js";
import type { Store } from "../cluster/store/store.js";
import { getVm, transitionVm } from "../cluster/store/vms.js";
import { assertActionAllowed } from "../cluster/vm-state.js";
import { NovaError } from "../lib/errors.js";
import { placeVm } from "../placement/most-free-memory.js";

const PLACEMENT_LOCK_KEY = 7_311_002; // shared with VM placement (vm-service.ts)

/** Starts and cancels migrations. */
export class MigrationService {
  constructor(
    private readonly store: Store,
    private readonly wake: () => void,
  ) {}

  /** Validates and queues a migration of a running VM. */
  async create(vmIdOrName: string, input: MigrationsPost): Promise<MigrationRecord> {
    validateOptions(input.options ?? {});
    const id = await this.store.write(async (tx, emit) => {
      await tx.query("SELECT pg_advisory_xact_lock($1)", [PLACEMENT_LOCK_KEY]);
      const vm = await getVm(tx, vmIdOrName, true);
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
      if (!vm.hostId) throw new NovaError("NOVA_INTERNAL", `VM ${vm.name} is running but has no host`);
      const source = await getHost(tx, vm.hostId);
      const options = input.options ?? {};
      const hosts = await listHosts(tx);
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
        // The same checks placement makes, for this one host (its image can be copied).
        placeVm([target], {
          vmName: vm.name,
          memoryMiB: vm.memoryMiB,
          imageName: vm.image,
          imageHostIds: [target.id],
        });
        targetId = target.id;
      } else {
        const others = hosts.filter((h) => h.id !== source.id);
        targetId = placeVm(others, {
          vmName: vm.name,
          memoryMiB: vm.memoryMiB,
          imageName: vm.image,
          imageHostIds: others.map((h) => h.id),
        }).id;
      }
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
        targetHostId: targetId,
        options,
        transport: "qemu",
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
    await requestCancel(this.store.read, id);
    this.wake();
    return getMigration(this.store.read, id);
  }
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
