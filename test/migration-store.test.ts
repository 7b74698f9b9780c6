// The migrations table on PostgreSQL and PGlite: which migrations the scheduler sees as
// active, and a state change as a compare-and-set that refuses a row moved first; its
// progress history (migration_samples): spaced, bounded by thinning, gone with the migration.
import { describe, expect, it } from "vitest";
import type { MigrationProgress } from "../src/api/types/migrations.js";
import { listSamples, recordSample } from "../src/cluster/store/migration-samples.js";
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

  const reading = (sent: number, dwcp = false): MigrationProgress => ({
    phase: "memory",
    diskBytesDone: 0,
    diskBytesTotal: 0,
    memoryBytesSent: sent,
    memoryBytesRemaining: 1000 - sent,
    memoryBytesTotal: 1000,
    pass: 1,
    pagesPerSecond: 10,
    dirtyBytesPerSecond: 5.5,
    throughputMbps: 12.5,
    expectedDowntimeMs: null,
    etaSeconds: null,
    autoConvergeThrottlePct: null,
    ...(dwcp
      ? {
          transport: {
            chosen: "dwcp",
            mode: "wan",
            reason: "asked for",
            wireBytes: Math.round(sent / 4),
            logicalBytes: sent,
            diskWireBytes: 7,
            diskLogicalBytes: 70,
          },
        }
      : {}),
  });
  const t0 = Date.parse("2026-12-01T10:00:00.000Z");
  const offer = (id: string, sent: number, ms: number, o: { cap?: number; force?: boolean } = {}) =>
    store.write((tx) => recordSample(tx, id, reading(sent), new Date(t0 + ms), o));

  it("keeps a progress reading at most once per spacing, oldest first, forced ones too", async () => {
    const id = await migrationOfNewVm("samples");
    expect(await offer(id, 100, 0)).toEqual({ recorded: true, nextAt: t0 + 1000 });
    expect(await offer(id, 150, 400)).toEqual({ recorded: false, nextAt: t0 + 1000 });
    expect((await offer(id, 200, 1000)).recorded).toBe(true);
    expect((await offer(id, 210, 1200, { force: true })).recorded).toBe(true);
    const { samples, sampleEveryMs } = await listSamples(store.db, id);
    expect(sampleEveryMs).toBe(1000);
    expect(samples.map((s) => [s.at, s.memoryBytesSent])).toEqual([
      ["2026-12-01T10:00:00.000Z", 100],
      ["2026-12-01T10:00:01.000Z", 200],
      ["2026-12-01T10:00:01.200Z", 210],
    ]);
    expect(samples[0]).toEqual({
      at: "2026-12-01T10:00:00.000Z",
      phase: "memory",
      pass: 1,
      memoryBytesSent: 100,
      memoryBytesRemaining: 900,
      diskBytesDone: 0,
      dirtyBytesPerSecond: 5.5,
      throughputMbps: 12.5,
      memoryWireBytes: null,
      memoryLogicalBytes: null,
      diskWireBytes: null,
      diskLogicalBytes: null,
    });
  });

  it("stores DWCP's wire and logical bytes for memory and disk", async () => {
    const id = await migrationOfNewVm("dwcp-samples");
    await store.write((tx) => recordSample(tx, id, reading(4_000_000_000, true), new Date(t0)));
    const [s] = (await listSamples(store.db, id)).samples;
    expect(s).toMatchObject({
      memoryBytesSent: 4_000_000_000,
      memoryWireBytes: 1_000_000_000,
      memoryLogicalBytes: 4_000_000_000,
      diskWireBytes: 7,
      diskLogicalBytes: 70,
    });
  });

  it("thins to every second sample and doubles the spacing at the cap", async () => {
    const id = await migrationOfNewVm("thin");
    for (let i = 0; i < 4; i++) expect((await offer(id, i, i * 1000, { cap: 4 })).recorded).toBe(true);
    // The fifth reading finds the cap reached: samples 2 and 4 go, the spacing becomes 2 s.
    expect(await offer(id, 4, 4000, { cap: 4 })).toEqual({ recorded: true, nextAt: t0 + 6000 });
    let h = await listSamples(store.db, id);
    expect(h.sampleEveryMs).toBe(2000);
    expect(h.samples.map((s) => s.memoryBytesSent)).toEqual([0, 2, 4]);
    expect((await offer(id, 5, 5000, { cap: 4 })).recorded).toBe(false);
    expect((await offer(id, 6, 6000, { cap: 4 })).recorded).toBe(true);
    h = await listSamples(store.db, id);
    expect(h.samples.map((s) => s.memoryBytesSent)).toEqual([0, 2, 4, 6]);
  });

  it("deletes a migration's samples with the migration, and refuses an unknown migration", async () => {
    const id = await migrationOfNewVm("gone");
    await offer(id, 1, 0);
    await offer(id, 2, 1000);
    await store.db.query("DELETE FROM migrations WHERE id = $1", [id]);
    const { rows } = await store.db.query<{ n: number | string }>(
      "SELECT count(*) AS n FROM migration_samples WHERE migration_id = $1",
      [id],
    );
    expect(Number(rows[0]!.n)).toBe(0);
    await expect(listSamples(store.db, id)).rejects.toMatchObject({ code: "NOVA_NOT_FOUND" });
    expect(await offer(id, 3, 2000)).toEqual({ recorded: false, nextAt: Number.POSITIVE_INFINITY });
  });
});
