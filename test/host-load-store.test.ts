// Load samples and the rebalancer's settings on PostgreSQL and PGlite: at most one sample
// per interval per host, an hour of history, listing by age; settings changed field by
// field, out-of-range values refused by the database itself.
import { describe, expect, it } from "vitest";
import {
  getRebalanceSettings,
  listLoadSamples,
  predictedUtilizations,
  recordLoadSample,
  updateRebalanceSettings,
} from "../src/cluster/store/host-load.js";
import type { Store } from "../src/cluster/store/store.js";
import { waitFor } from "../src/lib/wait.js";
import { DEFAULT_REBALANCE_SETTINGS } from "../src/placement/rebalance-plan.js";
import { ENGINES, storePerSuite } from "./helpers/databases.js";
import { addHost } from "./helpers/store-fixtures.js";

describe.each(ENGINES)("host load on $engine", ({ create }) => {
  let store!: Store;
  storePerSuite(create, (s) => {
    store = s;
  });

  it("keeps at most one sample per interval per host, and lists them oldest first", async () => {
    const a = await addHost(store.db, "load-a");
    const b = await addHost(store.db, "load-b");
    const vm = "00000000-0000-4000-8000-000000000001";
    expect(await recordLoadSample(store.db, a, 4, { cpuCores: 1.5, vms: { [vm]: 1.5 } }, 10_000)).toBe(true);
    expect(await recordLoadSample(store.db, a, 4, { cpuCores: 3, vms: {} }, 10_000)).toBe(false);
    expect(await recordLoadSample(store.db, b, 8, { cpuCores: 0.25, vms: {} }, 10_000)).toBe(true);
    // An interval of 0 takes every reading of a later instant. PGlite's clock ticks in
    // milliseconds, and a second reading at the same instant is the same key: wait for the
    // database's clock to pass the first.
    await waitFor(
      async () =>
        (
          await store.db.query<{ later: boolean }>(
            "SELECT now() > (SELECT max(at) FROM host_load_samples WHERE host_id = $1) AS later",
            [b],
          )
        ).rows[0]?.later,
      { timeoutMs: 5000, intervalMs: 1, what: "the database clock to pass the first sample" },
    );
    expect(await recordLoadSample(store.db, b, 8, { cpuCores: 0.5, vms: {} }, 0)).toBe(true);
    const samples = await listLoadSamples(store.read, 60_000);
    expect(samples.filter((s) => s.hostId === a)).toEqual([
      { hostId: a, at: expect.any(Number), cpuCores: 1.5, vcpus: 4, vms: { [vm]: 1.5 } },
    ]);
    expect(samples.filter((s) => s.hostId === b).map((s) => s.cpuCores)).toEqual([0.25, 0.5]);
  });

  it("predicts each host's utilization from recent samples, the newest weighing most, clamped to 0..1", async () => {
    const [a, b, c] = [
      await addHost(store.db, "pred-a"),
      await addHost(store.db, "pred-b"),
      await addHost(store.db, "pred-c"),
    ];
    const sample = (host: string, ago: string, cores: number) =>
      store.db.query(
        `INSERT INTO host_load_samples (host_id, at, cpu_cores, vcpus) VALUES ($1, now() - $2::interval, $3, 4)`,
        [host, ago, cores],
      );
    await sample(a, "9 minutes", 0); // idle long ago …
    await sample(a, "1 second", 4); // … busy now
    await sample(b, "30 seconds", 8); // overcommitted: 2.0, shown as 1
    await sample(c, "20 minutes", 4); // outside the window
    const p = await predictedUtilizations(store.read);
    expect(p.get(a)).toBeGreaterThan(0.9);
    expect(p.get(a)).toBeLessThan(1);
    expect(p.get(b)).toBe(1);
    expect(p.has(c)).toBe(false);
  });

  it("drops samples older than the hour when it stores one", async () => {
    const h = await addHost(store.db, "load-old");
    await store.db.query(
      "INSERT INTO host_load_samples (host_id, at, cpu_cores, vcpus) VALUES ($1, now() - interval '2 hours', 1, 4)",
      [h],
    );
    expect(await recordLoadSample(store.db, h, 4, { cpuCores: 2, vms: {} }, 10_000)).toBe(true);
    const { rows } = await store.db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM host_load_samples WHERE host_id = $1",
      [h],
    );
    expect(rows[0]!.n).toBe(1);
  });

  it("starts with the defaults, off, and changes only what it is given", async () => {
    const initial = await getRebalanceSettings(store.read);
    const { updatedAt: _at, updatedBy: _by, ...values } = initial;
    expect(values).toEqual(DEFAULT_REBALANCE_SETTINGS);
    const changed = await updateRebalanceSettings(
      store.db,
      { enabled: true, margin: 0.2, holdMs: 1000 },
      "alice",
    );
    expect(changed).toMatchObject({
      enabled: true,
      margin: 0.2,
      holdMs: 1000,
      threshold: 0.25,
      updatedBy: "alice",
    });
    expect(await getRebalanceSettings(store.read)).toEqual(changed);
    await expect(updateRebalanceSettings(store.db, { threshold: 2 }, "bob")).rejects.toThrow();
    expect((await getRebalanceSettings(store.read)).threshold).toBe(0.25);
  });
});
