// The migrations table on PostgreSQL and PGlite: which migrations the scheduler sees as
// active, and a state change as a compare-and-set that refuses a row moved first.
import { describe, expect, it } from "vitest";
import { upsertHost } from "../src/cluster/store/hosts.js";
import { getImage, insertImage } from "../src/cluster/store/images.js";
import {
  getMigration,
  insertMigration,
  listMigrations,
  transitionMigration,
} from "../src/cluster/store/migrations.js";
import type { Store } from "../src/cluster/store/store.js";
import { insertVm } from "../src/cluster/store/vms.js";
import { ENGINES, storePerSuite } from "./helpers/databases.js";

const capacity = {
  accel: "tcg" as const,
  accelReason: "test",
  vcpus: 2,
  memoryMiB: 4096,
  diskTotalBytes: 1e10,
  diskFreeBytes: 5e9,
};

describe.each(ENGINES)("migrations table on $engine", ({ create }) => {
  let store!: Store;
  storePerSuite(create, (s) => {
    store = s;
  });

  async function migrationOfNewVm(name: string): Promise<string> {
    const host = (h: string) =>
      upsertHost(store.db, {
        name: `${name}-${h}`,
        agentUrl: "http://127.0.0.1:1",
        agentToken: `${name}-${h}`,
        agentVersion: "0",
        capacity,
      });
    const a = await host("a");
    const b = await host("b");
    await insertImage(store.db, {
      name: `${name}-img`,
      diskDigest: "sha256:d",
      diskFormat: "qcow2",
      diskVirtualBytes: 1 << 26,
      kernelDigest: null,
      initrdDigest: null,
      cmdline: "",
      minMemoryMiB: 64,
    });
    const image = await getImage(store.db, `${name}-img`);
    const vm = await insertVm(store.db, {
      name,
      imageId: image.id,
      vcpus: 1,
      memoryMiB: 64,
      kernelArgs: "",
      desiredState: "running",
      hostId: a.id,
      state: "scheduled",
    });
    const { id } = await insertMigration(store.db, {
      vmId: vm.id,
      vmName: name,
      sourceHostId: a.id,
      targetHostId: b.id,
      options: {},
      transport: "qemu",
    });
    return id;
  }

  it("lists a migration as active until it reaches a final state", async () => {
    const id = await migrationOfNewVm("act");
    const active = async () => (await listMigrations(store.db, { activeOnly: true })).map((m) => m.id);
    expect(await active()).toContain(id);
    const m = await getMigration(store.db, id);
    await transitionMigration(store.db, m, "preparing", "preparing the target");
    expect(await active()).toContain(id);
    await transitionMigration(
      store.db,
      await getMigration(store.db, id),
      "cancelled",
      "cancelled by the user",
      {
        rollback: "nothing",
      },
    );
    expect(await active()).not.toContain(id);
    expect((await listMigrations(store.db)).map((x) => x.id)).toContain(id);
  });

  it("refuses a migration transition whose from-state another writer already changed", async () => {
    const id = await migrationOfNewVm("race");
    const stale = await getMigration(store.db, id);
    await transitionMigration(store.db, stale, "preparing", "first writer");
    await expect(transitionMigration(store.db, stale, "failed", "second writer")).rejects.toMatchObject({
      code: "NOVA_STATE_CHANGED",
      details: { from: "queued", to: "failed" },
    });
    const now = await getMigration(store.db, id);
    expect(now.state).toBe("preparing");
    expect(now.stateReason).toBe("first writer");
    expect(now.startedAt).not.toBeNull();
  });
});
