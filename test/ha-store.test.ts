// HA restart with fencing and storage pools on PostgreSQL and PGlite: an HA VM on a local
// disk is refused with NOVA_HA_LOCAL_DISK and nothing changes; pools write their marker
// and refuse a directory or removal that would share or orphan disks; pool VMs are placed
// only on hosts that see the pool; the HA restarter waits out the lease and margin, then
// moves an HA VM off its dead host with a new generation and fencing epoch, leaves a
// non-HA VM down, says why when no host can take it, and the old host is told to release
// its leftover copy.
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HaRestarter } from "../src/cluster/ha-restarter.js";
import { HostService } from "../src/cluster/host-service.js";
import { StoragePoolService } from "../src/cluster/storage-pool-service.js";
import { listEventsAfter } from "../src/cluster/store/events.js";
import { insertImage } from "../src/cluster/store/images.js";
import { syncHostStoragePools } from "../src/cluster/store/storage-pools.js";
import type { Store } from "../src/cluster/store/store.js";
import { getVm, listVms, transitionVm } from "../src/cluster/store/vms.js";
import { VmService } from "../src/cluster/vm-service.js";
import type { NovaError } from "../src/lib/errors.js";
import { waitFor } from "../src/lib/wait.js";
import { ENGINES, storePerSuite } from "./helpers/databases.js";
import { addLiveHost, TEST_CAPACITY, TEST_IMAGE } from "./helpers/store-fixtures.js";

const log = pino({ level: "silent" });
const CLUSTER = "3b0c7a4e-4f6b-4b8e-9d53-1c9c5a0e7d11";

describe.each(ENGINES)("HA restart and storage pools on $engine", ({ create }) => {
  let store!: Store;
  storePerSuite(create, (s) => {
    store = s;
  });
  let dir = "";
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "nc-pool-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const vms = () => new VmService(store, () => {});
  const pools = () => new StoragePoolService(store);

  const host = (name: string, memoryMiB = 4096): Promise<string> => addLiveHost(store.db, name, memoryMiB);

  async function image(name: string, hostIds: string[]): Promise<void> {
    await insertImage(store.db, { name, diskDigest: `sha256:${name}`, ...TEST_IMAGE });
    const { rows } = await store.db.query<{ id: string }>("SELECT id FROM images WHERE name = $1", [name]);
    for (const h of hostIds)
      await store.db.query("INSERT INTO image_locations (image_id, host_id) VALUES ($1, $2)", [
        rows[0]!.id,
        h,
      ]);
  }

  async function counts(): Promise<{ vms: number; events: number }> {
    const { rows } = await store.db.query<{ vms: number; events: number }>(
      "SELECT (SELECT count(*) FROM vms)::int AS vms, (SELECT count(*) FROM events)::int AS events",
    );
    return rows[0]!;
  }

  async function refusal(p: Promise<unknown>): Promise<NovaError> {
    return (await p.then(
      () => {
        throw new Error("expected a refusal");
      },
      (e: unknown) => e,
    )) as NovaError;
  }

  it("refuses an HA VM on a local disk with NOVA_HA_LOCAL_DISK, naming the fix, and creates nothing", async () => {
    const h = await host("loc-h");
    await image("loc-img", [h]);
    const before = await counts();
    const err = await refusal(vms().create({ name: "loc-ha", image: "loc-img", ha: "restart" }));
    expect(err.code).toBe("NOVA_HA_LOCAL_DISK");
    expect(err.status).toBe(422);
    expect(err.message).toContain("--storage-pool");
    expect(await counts()).toEqual(before);
  });

  it("refuses to turn HA on for a VM on a local disk, leaving it as it was", async () => {
    const h = await host("set-h");
    await image("set-img", [h]);
    const vm = await vms().create({ name: "set-vm", image: "set-img" });
    const before = await counts();
    const err = await refusal(vms().setHa("set-vm", "restart"));
    expect(err.code).toBe("NOVA_HA_LOCAL_DISK");
    expect(await counts()).toEqual(before);
    expect((await getVm(store.db, vm.id)).ha).toBe("none");
  });

  it("adds a pool by writing its marker, and refuses a directory another pool's marker holds or a path that is not normal", async () => {
    const poolDir = path.join(dir, "p1");
    await writeFile(path.join(dir, "keep"), "");
    await import("node:fs/promises").then((fs) => fs.mkdir(poolDir));
    const { pool, marker } = await pools().add({ name: "p1", path: poolDir });
    expect(marker).toEqual({ path: path.join(poolDir, ".novacron-pool"), content: pool.id, written: true });
    expect((await readFile(marker.path, "utf8")).trim()).toBe(pool.id);
    const before = await counts();
    expect((await refusal(pools().add({ name: "p1b", path: poolDir }))).code).toBe("NOVA_CONFLICT");
    expect((await refusal(pools().add({ name: "p1c", path: `${dir}/../x` }))).code).toBe("NOVA_BAD_REQUEST");
    expect(await counts()).toEqual(before);
    // A directory the server does not see: added, marker left to the operator.
    const far = await pools().add({ name: "far", path: path.join(dir, "not-mounted-here") });
    expect(far.marker.written).toBe(false);
  });

  it("places a pool VM only on a host that sees the pool, and says which hosts do not", async () => {
    const a = await host("pl-a", 8192);
    const b = await host("pl-b", 1024);
    await image("pl-img", [a, b]);
    const poolDir = path.join(dir, "p2");
    await import("node:fs/promises").then((fs) => fs.mkdir(poolDir));
    const { pool } = await pools().add({ name: "p2", path: poolDir });
    const none = await refusal(
      vms().create({ name: "pl-none", image: "pl-img", storagePool: "p2", ha: "restart" }),
    );
    expect(none.code).toBe("NOVA_NO_CAPACITY");
    // ITP's refusal names the check and how many hosts it turned away.
    expect(none.message).toMatch(/storage-pool: 2 hosts/);
    expect((none.details as { rejected: Record<string, number> }).rejected["storage-pool"]).toBe(2);
    await syncHostStoragePools(store.db, b, [pool.id]);
    const vm = await vms().create({ name: "pl-vm", image: "pl-img", storagePool: "p2", ha: "restart" });
    expect(vm).toMatchObject({ host: "pl-b", ha: "restart", storagePool: "p2", storagePoolPath: poolDir });
    expect((await pools().get("p2")).hosts).toEqual(["pl-b"]);
    const inUse = await refusal(pools().remove("p2"));
    expect(inUse.code).toBe("NOVA_STORAGE_POOL_IN_USE");
    expect(inUse.message).toContain("pl-vm");
  });

  it("restarts an HA VM on another host only after the lease and margin, leaves a non-HA VM down, and has the old host release its copy", async () => {
    const dead = await host("ha-dead");
    const spare = await host("ha-spare");
    const other = await host("ha-other");
    await image("ha-img", [dead, spare, other]);
    const poolDir = path.join(dir, "p3");
    await import("node:fs/promises").then((fs) => fs.mkdir(poolDir));
    const { pool } = await pools().add({ name: "p3", path: poolDir });
    for (const h of [dead, spare]) await syncHostStoragePools(store.db, h, [pool.id]);
    // Only `dead` may take them at create time.
    await store.db.query("UPDATE hosts SET cordoned = true WHERE id <> $1", [dead]);
    const ha = await vms().create({ name: "ha-vm", image: "ha-img", storagePool: "p3", ha: "restart" });
    const plain = await vms().create({ name: "ha-plain", image: "ha-img", storagePool: "p3" });
    await store.db.query("UPDATE hosts SET cordoned = false WHERE id IN ($1, $2)", [spare, other]);
    for (const v of [ha, plain]) {
      await transitionVm(store.db, await getVm(store.db, v.id), "starting", "t");
      await transitionVm(store.db, await getVm(store.db, v.id), "running", "t");
    }
    // The host died 10 s ago: within lease (15 s) + margin (5 s), so the restarter waits.
    await store.db.query(
      "UPDATE hosts SET liveness = 'dead', last_heartbeat_at = now() - interval '10 seconds' WHERE id = $1",
      [dead],
    );
    const restarted: string[] = [];
    const r = new HaRestarter(
      store,
      log,
      () => {},
      { intervalMs: 100 },
      (o) => restarted.push(o),
    );
    r.start();
    try {
      const waiting = await waitFor(
        async () => {
          const v = await getVm(store.db, ha.id);
          return v.stateReason.includes("lease has run out") ? v : undefined;
        },
        { timeoutMs: 10_000, what: "the HA VM to say it waits for the lease" },
      );
      expect(waiting).toMatchObject({ host: "ha-dead", state: "running" });
      // Now past lease + margin.
      await store.db.query(
        "UPDATE hosts SET last_heartbeat_at = now() - interval '25 seconds' WHERE id = $1",
        [dead],
      );
      const moved = await waitFor(
        async () => {
          const v = await getVm(store.db, ha.id);
          return v.host !== "ha-dead" ? v : undefined;
        },
        { timeoutMs: 10_000, what: "the HA VM to be moved" },
      );
      // ha-other does not see the pool; ha-spare does.
      expect(moved).toMatchObject({
        host: "ha-spare",
        state: "scheduled",
        generation: waiting.generation + 1,
        ownerEpoch: waiting.ownerEpoch + 1,
        haMovedFromHostId: dead,
      });
      expect(restarted).toEqual(["restarted"]);
      expect(await getVm(store.db, plain.id)).toMatchObject({ host: "ha-dead", state: "running" });
      const events = (await listEventsAfter(store.db, 0, 100_000)).filter((e) => e.resourceId === ha.id);
      expect(events.map((e) => e.type)).toEqual(expect.arrayContaining(["ha.waiting", "ha.restart"]));
      expect(events.find((e) => e.type === "ha.restart")?.data).toMatchObject({
        from: "ha-dead",
        to: "ha-spare",
        by: "lease",
      });

      // The dead host comes back reporting its leftover copy: the reply tells it to release
      // it with the new token, grants a lease and lists the pools.
      const hosts = new HostService(
        store,
        () => {},
        log,
        { caPem: "", issueHostCert: async () => "" },
        CLUSTER,
        undefined,
        { durationMs: 15_000, selfFenceAfterMs: 10_000 },
      );
      const reply = await hosts.heartbeat(dead, {
        agentUrl: "http://127.0.0.1:1",
        capacity: TEST_CAPACITY,
        vms: [
          { id: ha.id, generation: waiting.generation, state: "failed", reason: "self-fenced: …", pid: null },
          { id: plain.id, generation: plain.generation, state: "running", reason: "", pid: 1 },
        ],
        imageDigests: [],
        storagePools: [pool.id],
        selfFenced: [{ id: ha.id, at: "2026-12-07T03:00:00.000Z" }],
      });
      expect(reply.lease).toEqual({ durationMs: 15_000, selfFenceAfterMs: 10_000 });
      expect(reply.release).toEqual([
        { id: ha.id, fence: { owner: CLUSTER, epoch: waiting.ownerEpoch + 1 } },
      ]);
      expect(reply.storagePools).toContainEqual({ id: pool.id, path: poolDir });
      const fencedEvents = (await listEventsAfter(store.db, 0, 100_000)).filter(
        (e) => e.type === "ha.fenced",
      );
      expect(fencedEvents).toHaveLength(1);
    } finally {
      await r.stop();
    }
  });

  it("says why when no host can take an HA VM, and keeps it where it was", async () => {
    const lone = await host("nh-lone");
    await image("nh-img", [lone]);
    const poolDir = path.join(dir, "p4");
    await import("node:fs/promises").then((fs) => fs.mkdir(poolDir));
    const { pool } = await pools().add({ name: "p4", path: poolDir });
    await syncHostStoragePools(store.db, lone, [pool.id]);
    await store.db.query("UPDATE hosts SET cordoned = true WHERE id <> $1", [lone]);
    const v = await vms().create({ name: "nh-vm", image: "nh-img", storagePool: "p4", ha: "restart" });
    await store.db.query(
      "UPDATE hosts SET liveness = 'dead', last_heartbeat_at = now() - interval '60 seconds' WHERE id = $1",
      [lone],
    );
    const outcomes: string[] = [];
    const r = new HaRestarter(
      store,
      log,
      () => {},
      { intervalMs: 100 },
      (o) => outcomes.push(o),
    );
    r.start();
    try {
      const waiting = await waitFor(
        async () => {
          const x = await getVm(store.db, v.id);
          return x.stateReason.startsWith("HA restart waits") ? x : undefined;
        },
        { timeoutMs: 10_000, what: "the VM to say why it cannot be restarted" },
      );
      expect(waiting).toMatchObject({ host: "nh-lone", state: "scheduled" });
      expect(waiting.stateReason).toMatch(
        /^HA restart waits: host nh-lone died and No host can run VM nh-vm/,
      );
      // The dead host it leaves is turned away like any dead host.
      expect(waiting.stateReason).toMatch(/alive: 1 host/);
      expect(outcomes).toEqual(["no-host"]);
      expect((await listVms(store.db)).find((x) => x.id === v.id)?.ownerEpoch).toBe(v.ownerEpoch);
    } finally {
      await r.stop();
      await store.db.query("UPDATE hosts SET cordoned = false");
    }
  });
  /** An HA VM running on `hostName` (which alone sees a fresh pool), and a spare host that sees it too. */
  async function haVmOn(prefix: string): Promise<{ vmId: string; host: string; spare: string }> {
    const h = await host(`${prefix}-h`);
    const spare = await host(`${prefix}-spare`);
    await image(`${prefix}-img`, [h, spare]);
    const poolDir = path.join(dir, prefix);
    await import("node:fs/promises").then((fs) => fs.mkdir(poolDir));
    const { pool } = await pools().add({ name: prefix, path: poolDir });
    for (const x of [h, spare]) await syncHostStoragePools(store.db, x, [pool.id]);
    await store.db.query("UPDATE hosts SET cordoned = true WHERE id <> $1", [h]);
    const v = await vms().create({
      name: `${prefix}-vm`,
      image: `${prefix}-img`,
      storagePool: prefix,
      ha: "restart",
    });
    await store.db.query("UPDATE hosts SET cordoned = false WHERE id = $1", [spare]);
    await transitionVm(store.db, await getVm(store.db, v.id), "starting", "t");
    await transitionVm(store.db, await getVm(store.db, v.id), "running", "t");
    return { vmId: v.id, host: h, spare };
  }

  it("restarts at once when the fencing hook confirms the dead host is fenced, and waits out the lease when it fails", async () => {
    const ok = await haVmOn("hook-ok");
    const bad = await haVmOn("hook-bad");
    // Each haVmOn cordoned every other host while placing its VM.
    await store.db.query("UPDATE hosts SET cordoned = false WHERE id IN ($1, $2)", [ok.spare, bad.spare]);
    await store.db.query(
      "UPDATE hosts SET liveness = 'dead', last_heartbeat_at = now() - interval '2 seconds' WHERE id IN ($1, $2)",
      [ok.host, bad.host],
    );
    const script = path.join(dir, "fence-hook.sh");
    // Confirms hook-ok-h only: the host's name is the hook's argument.
    await writeFile(script, '#!/bin/sh\n[ "$1" = hook-ok-h ] && [ "$NOVACRON_HOST_NAME" = "$1" ]\n', {
      mode: 0o755,
    });
    const r = new HaRestarter(store, log, () => {}, { intervalMs: 100, fenceHook: script });
    r.start();
    try {
      const moved = await waitFor(
        async () => {
          const v = await getVm(store.db, ok.vmId);
          return v.hostId !== ok.host ? v : undefined;
        },
        { timeoutMs: 10_000, what: "the hook-fenced VM to be moved" },
      );
      expect(moved.hostId).toBe(ok.spare);
      const events = await listEventsAfter(store.db, 0, 100_000);
      expect(events.find((e) => e.type === "ha.restart" && e.resourceId === ok.vmId)?.data).toMatchObject({
        by: "hook",
      });
      const hookEvents = events.filter((e) => e.type === "ha.fence-hook");
      expect(hookEvents.find((e) => e.resourceId === ok.host)?.data).toMatchObject({ confirmed: true });
      await waitFor(
        async () =>
          (await listEventsAfter(store.db, 0, 100_000)).some(
            (e) => e.type === "ha.fence-hook" && e.resourceId === bad.host && e.data.confirmed === false,
          ) || undefined,
        { timeoutMs: 10_000, what: "the failed hook to be recorded" },
      );
      // Still within lease + margin: the VM whose hook failed stays put.
      const kept = await getVm(store.db, bad.vmId);
      expect(kept.hostId).toBe(bad.host);
      expect(kept.stateReason).toContain("the fencing hook did not confirm");
    } finally {
      await r.stop();
    }
  });

  it("starts a self-fenced HA VM again on its host when the host came back before any restart", async () => {
    const v = await haVmOn("back");
    await store.db.query(
      "UPDATE vms SET observed_state = 'failed', observed_reason = 'self-fenced: lease ran out' WHERE id = $1",
      [v.vmId],
    );
    await transitionVm(store.db, await getVm(store.db, v.vmId), "failed", "QEMU exited");
    const before = await getVm(store.db, v.vmId);
    const outcomes: string[] = [];
    const r = new HaRestarter(
      store,
      log,
      () => {},
      { intervalMs: 100 },
      (o) => outcomes.push(o),
    );
    r.start();
    try {
      const started = await waitFor(
        async () => {
          const x = await getVm(store.db, v.vmId);
          return x.state === "starting" ? x : undefined;
        },
        { timeoutMs: 10_000, what: "the VM to start again" },
      );
      expect(started).toMatchObject({
        hostId: v.host,
        generation: before.generation + 1,
        ownerEpoch: before.ownerEpoch,
      });
      // (VMs of the earlier cases are still on their dead hosts; only this one's outcome matters.)
      expect(outcomes).toContain("restarted-in-place");
    } finally {
      await r.stop();
    }
  });
});
