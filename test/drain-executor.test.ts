// The drain executor on PostgreSQL and PGlite, with the store real and the migrations
// stubbed (the end-to-end suite runs real ones): a refused move is reported with its code,
// a move is recorded with its migration and settled when the migration ends, stopped VMs
// are left once nothing else remains, and a new executor (a restarted server) picks a
// drain up where the last one stopped without starting a move twice.
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import type { MigrationsPost } from "../src/api/types/migrations.js";
import { getDrain } from "../src/cluster/store/drains.js";
import { upsertHost } from "../src/cluster/store/hosts.js";
import {
  getMigration,
  insertMigration,
  type MigrationRecord,
  transitionMigration,
} from "../src/cluster/store/migrations.js";
import type { Store } from "../src/cluster/store/store.js";
import { getVm, transitionVm } from "../src/cluster/store/vms.js";
import { NovaError } from "../src/lib/errors.js";
import { QEMU_10_0_2 } from "../src/lib/qemu-info.test-util.js";
import { waitFor } from "../src/lib/wait.js";
import { DrainExecutor } from "../src/migration/drain-executor.js";
import { DrainService } from "../src/migration/drain-service.js";
import { ENGINES, storePerSuite } from "./helpers/databases.js";
import { addImage, addVm, TEST_CAPACITY } from "./helpers/store-fixtures.js";

describe.each(ENGINES)("the drain executor on $engine", ({ create }) => {
  let store!: Store;
  storePerSuite(create, (s) => {
    store = s;
  });
  const executors: DrainExecutor[] = [];
  afterEach(async () => {
    for (const e of executors.splice(0)) await e.stop();
  });

  const liveHost = async (name: string) =>
    (
      await upsertHost(store.db, {
        name,
        agentUrl: "http://127.0.0.1:1",
        certificate: null,
        agentVersion: "0",
        capacity: TEST_CAPACITY,
        qemu: QEMU_10_0_2,
      })
    ).id;

  async function vmOn(name: string, hostId: string, running: boolean): Promise<string> {
    const id = await addVm(store.db, name, await addImage(store.db, `${name}-img`), hostId);
    await transitionVm(store.db, await getVm(store.db, id), "starting", "t");
    await transitionVm(store.db, await getVm(store.db, id), running ? "running" : "stopped", "t");
    return id;
  }

  /** Stands in for MigrationService.create: refuses the VMs in `refuse`, else queues a migration to `targetId` as the real one does. */
  function stubMigrations(targetId: string, refuse: Set<string>) {
    const created: string[] = [];
    return {
      created,
      create: async (vmId: string, _input: MigrationsPost): Promise<MigrationRecord> => {
        const vm = await getVm(store.read, vmId);
        if (refuse.has(vm.name))
          throw new NovaError("NOVA_NO_CAPACITY", `No host can run VM ${vm.name}: it needs 64 MiB`);
        const id = await store.write(async (tx, emit) => {
          emit(await transitionVm(tx, vm, "migrating", "migration queued"));
          const made = await insertMigration(tx, {
            vmId,
            vmName: vm.name,
            sourceHostId: vm.hostId!,
            target: { hostId: targetId },
            options: {},
            transport: "qemu",
          });
          emit(made.event);
          return made.id;
        });
        created.push(vm.name);
        return getMigration(store.read, id);
      },
    };
  }

  /** Ends a migration as completed: the VM runs on the target. */
  async function complete(migrationId: string, targetId: string): Promise<void> {
    await store.write(async (tx, emit) => {
      for (const to of ["preparing", "transferring", "switching-over", "completed"] as const)
        emit(await transitionMigration(tx, await getMigration(tx, migrationId), to, to));
      const m = await getMigration(tx, migrationId);
      await tx.query("UPDATE vms SET host_id = $2 WHERE id = $1", [m.vmId, targetId]);
      emit(await transitionVm(tx, await getVm(tx, m.vmId!), "running", "migration completed"));
    });
  }

  const start = (migrations: ReturnType<typeof stubMigrations>) => {
    const e = new DrainExecutor(store, migrations, pino({ level: "silent" }), 50);
    executors.push(e);
    e.start();
    return e;
  };

  it("retries a refused move after its back-off, reports it once no attempt is left, moves the others one at a time, leaves the stopped VM, ends incomplete", async () => {
    const h = await liveHost("x-h");
    const o = await liveHost("x-o");
    await vmOn("x-a", h, true);
    await vmOn("x-b", h, true);
    await vmOn("x-s", h, false);
    const migrations = stubMigrations(o, new Set(["x-a"]));
    // Refused up front only when nothing fits; x-a's refusal comes later, from the migration service.
    const d = await new DrainService(store, () => {}).start("x-h", {}, "t");
    const first = start(migrations);
    const moving = await waitFor(
      async () => (await getDrain(store.read, d.id)).vms.find((e) => e.vm === "x-b" && e.state === "moving"),
      { timeoutMs: 20_000, what: "x-b's move to start" },
    );
    const now = await getDrain(store.read, d.id);
    // Refused once: waiting out its back-off before the next attempt.
    expect(now.vms.find((e) => e.vm === "x-a")).toMatchObject({
      state: "waiting",
      attempts: 1,
      code: "NOVA_NO_CAPACITY",
      reason: "move 1 of 3 refused: No host can run VM x-a: it needs 64 MiB; retried in 5 s",
    });
    // Not left yet: a move is under way, and a stopped VM started meanwhile would be moved too.
    expect(now.vms.find((e) => e.vm === "x-s")?.state).toBe("waiting");
    expect(now.state).toBe("draining");

    // The server stops; the migration ends meanwhile; a new executor takes over.
    await first.stop();
    await complete(moving.migrationId!, o);
    start(migrations);
    const end = await waitFor(
      async () => {
        // The back-offs (5 s, 10 s) are over at once: the last attempt moved an hour back.
        await store.db.query(
          "UPDATE host_drain_vms SET last_attempt_at = now() - interval '1 hour' WHERE drain_id = $1 AND vm_name = 'x-a'",
          [d.id],
        );
        const x = await getDrain(store.read, d.id);
        return x.state === "draining" ? undefined : x;
      },
      { timeoutMs: 20_000, what: "the drain to end" },
    );
    expect(end.state).toBe("incomplete");
    expect(end.vms.find((e) => e.vm === "x-a")).toMatchObject({
      attempts: 3,
      code: "NOVA_NO_CAPACITY",
      reason: "No host can run VM x-a: it needs 64 MiB",
    });
    expect(end.stateReason).toBe("1 moved, 1 could not move, 1 not running, left on x-h; x-h stays cordoned");
    expect(end.vms.map((e) => [e.vm, e.state, e.targetHost])).toEqual([
      ["x-a", "failed", null],
      ["x-b", "moved", "x-o"],
      ["x-s", "left", null],
    ]);
    expect(migrations.created).toEqual(["x-b"]);
  });

  it("adopts a migration queued just before a restart instead of starting another, and honours a cancel", async () => {
    const h = await liveHost("y-h");
    const o = await liveHost("y-o");
    await vmOn("y-a", h, true);
    await vmOn("y-b", h, true);
    const migrations = stubMigrations(o, new Set());
    const d = await new DrainService(store, () => {}).start("y-h", {}, "t");
    // As if the last server created y-a's migration and died before recording it.
    const orphan = await migrations.create((await getVm(store.read, "y-a")).id, {});
    await new DrainService(store, () => {}).cancel("y-h", "t");
    start(migrations);
    await waitFor(
      async () => (await getDrain(store.read, d.id)).vms.find((e) => e.vm === "y-a")?.state === "moving",
      { timeoutMs: 20_000, what: "y-a's migration to be adopted" },
    );
    expect((await getDrain(store.read, d.id)).vms[0]?.migrationId).toBe(orphan.id);
    await complete(orphan.id, o);
    const end = await waitFor(
      async () => {
        const x = await getDrain(store.read, d.id);
        return x.state === "draining" ? undefined : x;
      },
      { timeoutMs: 20_000, what: "the drain to end" },
    );
    expect(end.state).toBe("cancelled");
    expect(end.vms.map((e) => [e.vm, e.state])).toEqual([
      ["y-a", "moved"],
      ["y-b", "cancelled"],
    ]);
    // Only the orphan: nothing started after the cancel, and y-a was not moved twice.
    expect(migrations.created).toEqual(["y-a"]);
  });
});
