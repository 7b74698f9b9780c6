// Each persisted state machine against its table, on PostgreSQL and PGlite: the column's
// CHECK allows exactly the machine's states, and a transition is a compare-and-set that
// refuses a row another writer moved first.
import { describe, expect, it } from "vitest";
import type { Store } from "../src/cluster/store/store.js";
import { getVm, transitionVm } from "../src/cluster/store/vms.js";
import { STATE_MACHINES } from "../src/states/catalog.js";
import { ENGINES, storePerSuite } from "./helpers/databases.js";
import { addHost, addImage, addVm } from "./helpers/store-fixtures.js";

/** The values a column's CHECK (… IN (…)) constraint allows, read back from the catalog. */
async function checkedValues(store: Store, table: string, column: string): Promise<string[]> {
  const { rows } = await store.db.query<{ def: string }>(
    `SELECT pg_get_constraintdef(c.oid) AS def FROM pg_constraint c
       JOIN pg_class t ON t.oid = c.conrelid
     WHERE t.relname = $1 AND c.contype = 'c'`,
    [table],
  );
  const mentions = rows.filter((r) => new RegExp(`(^|[^a-z_])${column} = ANY`).test(r.def));
  expect(mentions, `one CHECK on ${table}.${column}`).toHaveLength(1);
  return [...(mentions[0] as { def: string }).def.matchAll(/'([^']+)'::text/g)].map((m) => m[1] as string);
}

describe.each(ENGINES)("state machines on $engine", ({ create }) => {
  let store!: Store;
  storePerSuite(create, (s) => {
    store = s;
  });

  it("each persisted machine's column allows exactly the machine's states", async () => {
    for (const { machine, column } of STATE_MACHINES) {
      if (!column) continue;
      const [table, col] = column.split(".") as [string, string];
      expect((await checkedValues(store, table, col)).sort(), column).toEqual([...machine.list].sort());
    }
  });

  it("refuses a VM transition whose from-state another writer already changed", async () => {
    const hostId = await addHost(store.db, "h1");
    const id = await addVm(store.db, "race", await addImage(store.db, "guest"), hostId);
    const stale = await getVm(store.db, id);
    await transitionVm(store.db, stale, "starting", "first writer");
    await expect(transitionVm(store.db, stale, "failed", "second writer")).rejects.toMatchObject({
      code: "NOVA_STATE_CHANGED",
      details: { from: "scheduled", to: "failed" },
    });
    const now = await getVm(store.db, id);
    expect(now.state).toBe("starting");
    expect(now.stateReason).toBe("first writer");
  });
});
