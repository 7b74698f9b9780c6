// The store suite: the same SQL and repositories on a real PostgreSQL server and on PGlite.
import { describe, expect, it } from "vitest";
import { claimClusterCa } from "../src/cluster/store/cluster-ca.js";
import { openDb } from "../src/cluster/store/db.js";
import { listEventsAfter } from "../src/cluster/store/events.js";
import {
  findHostByCertSerial,
  getHost,
  listHosts,
  markSilentHostsDead,
  recordHeartbeat,
  setCordon,
  upsertHost,
} from "../src/cluster/store/hosts.js";
import { addImageLocation, getImage, insertImage, syncImageLocations } from "../src/cluster/store/images.js";
import { migrate, schemaVersion } from "../src/cluster/store/migrate.js";
import { Store } from "../src/cluster/store/store.js";
import { countTokens, createToken, findToken } from "../src/cluster/store/tokens.js";
import {
  getVm,
  insertVm,
  listVms,
  publicVm,
  setObserved,
  transitionVm,
  vmFence,
} from "../src/cluster/store/vms.js";
import { isNovaError } from "../src/lib/errors.js";
import { ENGINES, storePerSuite } from "./helpers/databases.js";
import { TEST_CAPACITY } from "./helpers/store-fixtures.js";

const capacity = TEST_CAPACITY;

describe.each(ENGINES)("store on $engine", ({ create }) => {
  let store!: Store;
  storePerSuite(create, (s) => {
    store = s;
  });

  it("migrates to the latest version and is idempotent on reopen", async () => {
    expect(await schemaVersion(store.db)).toBeGreaterThanOrEqual(1);
    expect(await migrate(store.db)).toEqual([]);
  });

  it("refuses a database whose schema is newer than the code", async () => {
    const latest = await schemaVersion(store.db);
    const fake = [{ version: 1, name: "init", sql: "SELECT 1" }];
    if (latest > 1) {
      await expect(migrate(store.db, fake)).rejects.toMatchObject({ code: "NOVA_SCHEMA_TOO_NEW" });
    } else {
      await store.db.query("INSERT INTO schema_migrations (version, name) VALUES (99, 'future')");
      await expect(migrate(store.db, fake)).rejects.toMatchObject({ code: "NOVA_SCHEMA_TOO_NEW" });
      await store.db.query("DELETE FROM schema_migrations WHERE version = 99");
    }
  });

  it("stores only token hashes and finds tokens by their secret", async () => {
    const { token } = await createToken(store.db, "admin", "admin");
    expect(await findToken(store.db, token)).toMatchObject({ kind: "admin" });
    expect(await findToken(store.db, `${token}x`)).toBeUndefined();
    expect(await countTokens(store.db, "admin")).toBe(1);
    const { rows } = await store.db.query<{ token_hash: string }>("SELECT token_hash FROM api_tokens");
    expect(rows.every((r) => !r.token_hash.includes(token))).toBe(true);
  });

  it("belongs to one cluster CA: the first server records it, another CA is refused", async () => {
    await claimClusterCa(store.db, "sha256:aa", "first");
    await claimClusterCa(store.db, "sha256:aa", "replica");
    const err = await claimClusterCa(store.db, "sha256:bb", "/x/ca.crt").catch((e: unknown) => e);
    expect(isNovaError(err, "NOVA_CONFIG")).toBe(true);
    expect((err as Error).message).toContain("belongs to the cluster whose CA is sha256:aa");
  });

  it("registers a host once by name and knows it only by its current certificate", async () => {
    const cert = (serial: string) => ({
      serial,
      fingerprint: `sha256:${serial}`,
      notAfter: new Date(Date.now() + 86_400_000),
    });
    const a = await upsertHost(store.db, {
      name: "h1",
      agentUrl: "http://127.0.0.1:1",
      certificate: cert("0a"),
      agentVersion: "0",
      capacity,
    });
    const b = await upsertHost(store.db, {
      name: "h1",
      agentUrl: "http://127.0.0.1:2",
      certificate: cert("0b"),
      agentVersion: "0",
      capacity,
    });
    expect(a.created).toBe(true);
    expect(b.created).toBe(false);
    expect(b.id).toBe(a.id);
    expect(await findHostByCertSerial(store.db, "0a")).toBeUndefined();
    expect((await findHostByCertSerial(store.db, "0b"))?.agentUrl).toBe("http://127.0.0.1:2");
    expect((await getHost(store.db, "h1")).certificate?.serial).toBe("0b");
    // The server keeps no host secret at all.
    const { rows } = await store.db.query<{ column_name: string }>(
      "SELECT column_name FROM information_schema.columns WHERE table_name = 'hosts'",
    );
    expect(rows.map((r) => r.column_name)).not.toContain("agent_token");
  });

  it("marks silent hosts dead and revives them on heartbeat", async () => {
    const h = await getHost(store.db, "h1");
    await store.db.query("UPDATE hosts SET last_heartbeat_at = now() - interval '1 hour' WHERE id = $1", [
      h.id,
    ]);
    expect((await markSilentHostsDead(store.db, 10_000)).map((x) => x.name)).toEqual(["h1"]);
    expect((await getHost(store.db, h.id)).liveness).toBe("dead");
    expect(await recordHeartbeat(store.db, h.id, h.agentUrl, capacity)).toBe("dead");
    expect((await getHost(store.db, "h1")).liveness).toBe("alive");
  });

  it("keeps image names unique and tracks where images are", async () => {
    const h = await getHost(store.db, "h1");
    const img = {
      name: "guest",
      diskDigest: "sha256:d",
      diskFormat: "qcow2" as const,
      diskVirtualBytes: 1 << 26,
      kernelDigest: "sha256:k",
      initrdDigest: null,
      cmdline: "console=ttyS0",
      minMemoryMiB: 64,
    };
    const id = await insertImage(store.db, img);
    await expect(insertImage(store.db, img)).rejects.toMatchObject({ code: "NOVA_CONFLICT" });
    await addImageLocation(store.db, id, h.id);
    expect((await getImage(store.db, "guest")).hosts).toEqual(["h1"]);
    await syncImageLocations(store.db, h.id, ["sha256:d"]); // kernel blob gone → not there
    expect((await getImage(store.db, id)).hosts).toEqual([]);
    await syncImageLocations(store.db, h.id, ["sha256:d", "sha256:k"]);
    expect((await getImage(store.db, id)).hosts).toEqual(["h1"]);
  });

  it("counts memory of placed, non-stopped VMs against the host", async () => {
    const h = await getHost(store.db, "h1");
    const image = await getImage(store.db, "guest");
    await store.write(async (tx, emit) => {
      const { event } = await insertVm(tx, {
        name: "vm1",
        imageId: image.id,
        vcpus: 1,
        memoryMiB: 512,
        kernelArgs: "",
        desiredState: "running",
        hostId: h.id,
        state: "scheduled",
      });
      emit(event);
      await insertVm(tx, {
        name: "vm2",
        imageId: image.id,
        vcpus: 1,
        memoryMiB: 256,
        kernelArgs: "",
        desiredState: "stopped",
        hostId: h.id,
        state: "stopped",
      });
    });
    const after = await getHost(store.db, "h1");
    expect(after.allocatedMemoryMiB).toBe(512);
    expect(after.freeMemoryMiB).toBe(4096 - 512);
    expect(after.vmCount).toBe(2);
    await expect(
      insertVm(store.db, {
        name: "vm1",
        imageId: image.id,
        vcpus: 1,
        memoryMiB: 1,
        kernelArgs: "",
        desiredState: "running",
        hostId: h.id,
        state: "scheduled",
      }),
    ).rejects.toMatchObject({ code: "NOVA_CONFLICT" });
  });

  it("records each transition with its event and publishes only after commit", async () => {
    const heard: string[] = [];
    const unsubscribe = store.bus.subscribe((e) => heard.push(`${e.type}:${String(e.data.to ?? "")}`));
    await expect(
      store.write(async (tx, emit) => {
        const vm = await getVm(tx, "vm1", true);
        emit(await transitionVm(tx, vm, "starting", "agent starting QEMU"));
        throw new Error("roll back");
      }),
    ).rejects.toThrow("roll back");
    expect(heard).toEqual([]);
    expect((await getVm(store.db, "vm1")).state).toBe("scheduled");

    await store.write(async (tx, emit) => {
      const vm = await getVm(tx, "vm1", true);
      emit(await transitionVm(tx, vm, "starting", "agent starting QEMU", { bumpGeneration: true }));
    });
    unsubscribe();
    expect(heard).toEqual(["vm.state:starting"]);
    const vm = await getVm(store.db, "vm1");
    expect(vm).toMatchObject({ state: "starting", stateReason: "agent starting QEMU", generation: 2 });
    // Created here: owned by this cluster (no owner named) at the first epoch, so its
    // fencing token names this cluster's id at epoch 1.
    expect(vm).toMatchObject({ ownerClusterId: null, ownerEpoch: 1 });
    expect(vmFence(vm, "c0000000-0000-4000-8000-000000000001")).toEqual({
      owner: "c0000000-0000-4000-8000-000000000001",
      epoch: 1,
    });
    expect(publicVm(vm)).not.toHaveProperty("ownerEpoch");
    const events = (await listEventsAfter(store.db, 0)).filter((e) => e.resourceId === vm.id);
    expect(events.map((e) => e.type)).toEqual(["vm.created", "vm.state"]);
    expect(events[1]!.data).toMatchObject({ from: "scheduled", to: "starting" });
  });

  it("refuses an illegal transition without changing anything", async () => {
    const vm = await getVm(store.db, "vm2");
    await expect(store.write((tx) => transitionVm(tx, vm, "running", "x"))).rejects.toSatisfy((e) =>
      isNovaError(e, "NOVA_INTERNAL"),
    );
    expect((await getVm(store.db, "vm2")).state).toBe("stopped");
  });

  it("tracks observed state apart from the lifecycle and lists by host", async () => {
    const vm = await getVm(store.db, "vm1");
    expect(await setObserved(store.db, vm.id, "running", "", 2)).toBe(true);
    expect(await setObserved(store.db, vm.id, "running", "", 2)).toBe(false);
    expect(await setObserved(store.db, vm.id, "stopped", "stale report", 1)).toBe(false);
    expect(await getVm(store.db, vm.id)).toMatchObject({ observedState: "running", observedGeneration: 2 });
    const h = await getHost(store.db, "h1");
    expect((await listVms(store.db, { hostId: h.id })).map((v) => v.name)).toEqual(["vm1", "vm2"]);
    const event = await setCordon(store.db, h, true, "drain");
    expect(event).toMatchObject({
      type: "host.cordon",
      resourceId: h.id,
      data: { name: "h1", cordoned: true, by: "drain" },
    });
    expect((await listHosts(store.db))[0]!.cordoned).toBe(true);
  });

  it("gives a clear error for an unknown VM, host and image", async () => {
    await expect(getVm(store.db, "nope")).rejects.toThrow(/VM nope not found/);
    await expect(getHost(store.db, "nope")).rejects.toThrow(/Host nope not found/);
    await expect(getImage(store.db, "nope")).rejects.toThrow(/Image nope not found/);
  });
});

describe("embedded PGlite in a data dir", () => {
  it("keeps its data across a reopen", async () => {
    const { mkdtemp, rm } = await import("node:fs/promises");
    const dir = await mkdtemp("/tmp/nc-store-");
    try {
      const a = await Store.open({ dataDir: dir });
      await createToken(a.db, "admin", "admin");
      await a.close();
      const db = await openDb({ dataDir: dir });
      const { rows } = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM api_tokens");
      expect(rows[0]!.n).toBe(1);
      await db.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
