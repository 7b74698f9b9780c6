// The migrations table on PostgreSQL and PGlite: which migrations the scheduler sees as
// active, and a state change as a compare-and-set that refuses a row moved first.
import { describe, expect, it } from "vitest";
import {
  getMigration,
  insertMigration,
  listMigrations,
  transitionMigration,
} from "../src/cluster/store/migrations.js";
import type { Store } from "../src/cluster/store/store.js";
import { ENGINES, storePerSuite } from "./helpers/databases.js";
import { addHost, addImage, addVm } from "./helpers/store-fixtures.js";

describe.each(ENGINES)("migrations table on $engine", ({ create }) => {
  let store!: Store;
  storePerSuite(create, (s) => {
    store = s;
  });

  async function migrationOfNewVm(name: string): Promise<string> {
    const a = await addHost(store.db, `${name}-a`);
    const b = await addHost(store.db, `${name}-b`);
    const vmId = await addVm(store.db, name, await addImage(store.db, `${name}-img`), a);
    const { id } = await insertMigration(store.db, {
      vmId,
      vmName: name,
      sourceHostId: a,
      target: { hostId: b },
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
