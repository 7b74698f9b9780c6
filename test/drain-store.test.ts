// The drain tables on PostgreSQL and PGlite: a drain and its per-VM entries as recorded,
// listed and shown on the host, every state change a compare-and-set, one drain under way
// per host; and the drain service's up-front refusals, which change nothing.
import pino from "pino";
import { describe, expect, it } from "vitest";
import { HostService } from "../src/cluster/host-service.js";
import {
  getDrain,
  insertDrain,
  latestDrainOfHost,
  listActiveDrains,
  requestDrainCancel,
  transitionDrain,
  transitionDrainVm,
} from "../src/cluster/store/drains.js";
import { getHost } from "../src/cluster/store/hosts.js";
import type { Store } from "../src/cluster/store/store.js";
import { getVm, transitionVm } from "../src/cluster/store/vms.js";
import type { NovaError } from "../src/lib/errors.js";
import { DrainService } from "../src/migration/drain-service.js";
import { ENGINES, storePerSuite } from "./helpers/databases.js";
import { addHost, addImage, addLiveHost, addVm } from "./helpers/store-fixtures.js";

describe.each(ENGINES)("host drains on $engine", ({ create }) => {
  let store!: Store;
  storePerSuite(create, (s) => {
    store = s;
  });

  /** A live host with a QEMU (schedulable) and `memoryMiB` of memory. */
  const liveHost = (name: string, memoryMiB = 4096): Promise<string> =>
    addLiveHost(store.db, name, memoryMiB);

  async function runningVm(name: string, hostId: string): Promise<string> {
    const id = await addVm(store.db, name, await addImage(store.db, `${name}-img`), hostId);
    await transitionVm(store.db, await getVm(store.db, id), "starting", "t");
    await transitionVm(store.db, await getVm(store.db, id), "running", "t");
    return id;
  }

  it("records a drain with an entry per VM, lists it as active and shows it on the host", async () => {
    const h = await addHost(store.db, "rec-h");
    const img = await addImage(store.db, "rec-img");
    const a = await addVm(store.db, "rec-a", img, h);
    const b = await addVm(store.db, "rec-b", img, h);
    const { id, event } = await insertDrain(store.db, {
      hostId: h,
      hostName: "rec-h",
      concurrency: 2,
      requestedBy: "alice",
      vms: [
        { id: a, name: "rec-a" },
        { id: b, name: "rec-b" },
      ],
    });
    expect(event).toMatchObject({ type: "drain.created", resourceType: "drain", resourceId: id });
    const d = await getDrain(store.db, id);
    expect(d).toMatchObject({
      host: "rec-h",
      state: "draining",
      concurrency: 2,
      cancelRequested: false,
      requestedBy: "alice",
      finishedAt: null,
    });
    expect(d.vms.map((e) => [e.vm, e.state, e.vmId])).toEqual([
      ["rec-a", "waiting", a],
      ["rec-b", "waiting", b],
    ]);
    expect((await listActiveDrains(store.db)).map((x) => x.id)).toContain(id);
    expect((await getHost(store.db, h)).drain).toEqual({ id, state: "draining", cancelRequested: false });
    expect((await latestDrainOfHost(store.db, h))?.id).toBe(id);
  });

  it("allows one drain under way per host", async () => {
    const h = await addHost(store.db, "one-h");
    const input = { hostId: h, hostName: "one-h", concurrency: 1, requestedBy: "x", vms: [] };
    await insertDrain(store.db, input);
    await expect(insertDrain(store.db, input)).rejects.toThrow();
    expect((await listActiveDrains(store.db)).filter((d) => d.hostId === h)).toHaveLength(1);
  });

  it("moves an entry by compare-and-set, keeping the fields a later move does not give", async () => {
    const h = await addHost(store.db, "cas-h");
    const a = await addVm(store.db, "cas-a", await addImage(store.db, "cas-img"), h);
    const { id } = await insertDrain(store.db, {
      hostId: h,
      hostName: "cas-h",
      concurrency: 1,
      requestedBy: "x",
      vms: [{ id: a, name: "cas-a" }],
    });
    const d = await getDrain(store.db, id);
    const stale = d.vms[0]!;
    const mid = "00000000-0000-4000-8000-0000000000aa";
    await transitionDrainVm(store.db, d, stale, "moving", {
      migrationId: mid,
      targetHost: "b",
      reason: "migrating to b",
    });
    await expect(
      transitionDrainVm(store.db, d, stale, "failed", { code: "NOVA_X", reason: "second writer" }),
    ).rejects.toMatchObject({ code: "NOVA_STATE_CHANGED", details: { from: "waiting", to: "failed" } });
    const moving = (await getDrain(store.db, id)).vms[0]!;
    expect(moving).toMatchObject({ state: "moving", migrationId: mid, targetHost: "b", code: null });
    const event = await transitionDrainVm(store.db, d, moving, "moved", { reason: "moved to b" });
    expect(event).toMatchObject({
      type: "drain.vm",
      data: { vm: "cas-a", from: "moving", to: "moved", migrationId: mid },
    });
    expect((await getDrain(store.db, id)).vms[0]).toMatchObject({
      state: "moved",
      migrationId: mid,
      targetHost: "b",
    });
    await expect(
      transitionDrainVm(store.db, d, { ...moving, state: "moved" }, "waiting", { reason: "" }),
    ).rejects.toMatchObject({
      code: "NOVA_ILLEGAL_STATE",
    });
  });

  it("ends a drain by compare-and-set, and a cancel only lands while it is under way", async () => {
    const h = await addHost(store.db, "end-h");
    const { id } = await insertDrain(store.db, {
      hostId: h,
      hostName: "end-h",
      concurrency: 1,
      requestedBy: "x",
      vms: [],
    });
    const stale = await getDrain(store.db, id);
    expect(await requestDrainCancel(store.db, stale, "bob")).toMatchObject({
      type: "drain.cancel",
      data: { by: "bob" },
    });
    expect((await getDrain(store.db, id)).cancelRequested).toBe(true);
    await transitionDrain(store.db, stale, "cancelled", "cancelled: 0 moved");
    await expect(transitionDrain(store.db, stale, "drained", "second writer")).rejects.toMatchObject({
      code: "NOVA_STATE_CHANGED",
    });
    const ended = await getDrain(store.db, id);
    expect(ended).toMatchObject({ state: "cancelled", stateReason: "cancelled: 0 moved" });
    expect(ended.finishedAt).not.toBeNull();
    expect(await requestDrainCancel(store.db, ended, "bob")).toBeUndefined();
    expect((await listActiveDrains(store.db)).map((x) => x.id)).not.toContain(id);
    // A new drain of the same host may start once the last one ended.
    await insertDrain(store.db, { hostId: h, hostName: "end-h", concurrency: 1, requestedBy: "x", vms: [] });
  });

  describe("the drain service", () => {
    const refusal = async (p: Promise<unknown>): Promise<NovaError> => {
      try {
        await p;
      } catch (err) {
        return err as NovaError;
      }
      throw new Error("expected a refusal");
    };

    it("refuses with nothing changed: unknown host, dead host, last schedulable host, VMs that fit nowhere", async () => {
      const drains = new DrainService(store, () => {});
      expect((await refusal(drains.start("svc-nope", {}, "t"))).code).toBe("NOVA_NOT_FOUND");

      const lone = await liveHost("svc-lone");
      await runningVm("svc-lone-vm", lone);
      const last = await refusal(drains.start("svc-lone", {}, "t"));
      // Every other host of this suite's database lacks a QEMU or is cordoned: svc-lone is the last schedulable.
      expect(last.code).toBe("NOVA_DRAIN_NO_TARGET");
      expect(last.message).toMatch(/svc-lone: it is the last schedulable host/);

      const small = await liveHost("svc-small", 100);
      const big = await runningVm("svc-big", lone);
      await store.db.query("UPDATE vms SET memory_mib = 512 WHERE id = $1", [big]);
      const misfit = await refusal(drains.start("svc-lone", {}, "t"));
      expect(misfit.code).toBe("NOVA_DRAIN_NO_TARGET");
      expect(misfit.message).toMatch(/cannot take VM svc-big /);
      expect(misfit.details).toMatchObject({
        unplaceable: [{ vm: "svc-big" }],
        placed: [{ vm: "svc-lone-vm", host: "svc-small" }],
      });

      await store.db.query("UPDATE hosts SET liveness = 'dead' WHERE id = $1", [lone]);
      expect((await refusal(drains.start("svc-lone", {}, "t"))).code).toBe("NOVA_HOST_DOWN");

      const host = await getHost(store.db, lone);
      expect(host.cordoned).toBe(false);
      expect(host.drain).toBeNull();
      expect(await latestDrainOfHost(store.db, small)).toBeUndefined();
    });

    it("cordons the host and records the drain; refuses a second one, uncordon and a cancel after the end", async () => {
      let woken = 0;
      const drains = new DrainService(store, () => woken++);
      const h = await liveHost("ok-h");
      await liveHost("ok-other");
      await runningVm("ok-vm", h);
      const d = await drains.start("ok-h", { concurrency: 2 }, "carol");
      expect(d).toMatchObject({ host: "ok-h", state: "draining", concurrency: 2, requestedBy: "carol" });
      expect(d.vms.map((e) => e.vm)).toEqual(["ok-vm"]);
      expect(woken).toBe(1);
      expect((await getHost(store.db, h)).cordoned).toBe(true);

      const again = await refusal(drains.start("ok-h", {}, "t"));
      expect(again).toMatchObject({ code: "NOVA_DRAIN_ACTIVE", details: { drain: d.id } });
      const hosts = new HostService(
        store,
        () => {},
        pino({ level: "silent" }),
        { caPem: "", issueHostCert: async () => "" },
        "c",
      );
      expect((await refusal(hosts.cordon("ok-h", false))).code).toBe("NOVA_DRAIN_ACTIVE");
      expect((await getHost(store.db, h)).cordoned).toBe(true);

      const cancelled = await drains.cancel("ok-h", "carol");
      expect(cancelled.cancelRequested).toBe(true);
      await transitionDrain(store.db, cancelled, "cancelled", "cancelled");
      expect((await refusal(drains.cancel("ok-h", "carol"))).code).toBe("NOVA_ILLEGAL_STATE");
      expect((await drains.latest("ok-h")).state).toBe("cancelled");
      expect((await refusal(drains.latest("ok-other"))).code).toBe("NOVA_NOT_FOUND");
    });
  });
});
