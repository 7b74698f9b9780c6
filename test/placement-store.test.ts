// Placement's tables on PostgreSQL and PGlite: placement groups and their members, every
// change a compare-and-set on the group's generation, a deleted VM leaving its groups; a
// host's labels merged in one statement; and a drain's up-front check placing through ITP
// with the groups (an anti-affine pair is planned apart, or the drain refused).
import { describe, expect, it } from "vitest";
import { ClusterPlacement } from "../src/cluster/placement.js";
import { getHost, updateHostLabels, updateHostPlacement, upsertHost } from "../src/cluster/store/hosts.js";
import {
  addGroupMembers,
  deletePlacementGroup,
  getPlacementGroup,
  insertPlacementGroup,
  listPlacementGroups,
  removeGroupMember,
} from "../src/cluster/store/placement-groups.js";
import type { Store } from "../src/cluster/store/store.js";
import { deleteVmRow, getVm, transitionVm } from "../src/cluster/store/vms.js";
import { isNovaError, type NovaError } from "../src/lib/errors.js";
import { QEMU_10_0_2 } from "../src/lib/qemu-info.test-util.js";
import { DrainService } from "../src/migration/drain-service.js";
import { ENGINES, storePerSuite } from "./helpers/databases.js";
import { addHost, addImage, addVm, TEST_CAPACITY } from "./helpers/store-fixtures.js";

async function refusal(p: Promise<unknown>): Promise<NovaError> {
  try {
    await p;
  } catch (err) {
    if (isNovaError(err)) return err;
    throw err;
  }
  throw new Error("expected a refusal");
}

describe.each(ENGINES)("placement tables on $engine", ({ create }) => {
  let store!: Store;
  storePerSuite(create, (s) => {
    store = s;
  });

  it("records a group with its members; every change is a compare-and-set on its generation", async () => {
    const h = await addHost(store.db, "pg-h");
    const img = await addImage(store.db, "pg-img");
    const a = await addVm(store.db, "pg-a", img, h);
    const b = await addVm(store.db, "pg-b", img, h);
    const { id, event } = await insertPlacementGroup(store.db, {
      name: "pg-web",
      policy: "anti-affinity",
      scope: "host",
      enforcement: "hard",
      memberIds: [a],
    });
    expect(event).toMatchObject({ type: "placement-group.created", resourceId: id });
    const g = await getPlacementGroup(store.db, "pg-web");
    expect(g).toMatchObject({ name: "pg-web", members: ["pg-a"], memberIds: [a], generation: 1 });
    expect((await refusal(insertPlacementGroup(store.db, { ...g, memberIds: [] }))).code).toBe(
      "NOVA_CONFLICT",
    );

    await addGroupMembers(store.db, g, [{ id: b, name: "pg-b" }]);
    const after = await getPlacementGroup(store.db, id);
    expect(after).toMatchObject({ members: ["pg-a", "pg-b"], generation: 2 });
    // A writer holding the old generation loses, and changes nothing.
    expect((await refusal(removeGroupMember(store.db, g, { id: a, name: "pg-a" }))).code).toBe(
      "NOVA_STATE_CHANGED",
    );
    expect((await refusal(deletePlacementGroup(store.db, g))).code).toBe("NOVA_STATE_CHANGED");
    expect((await getPlacementGroup(store.db, id)).members).toEqual(["pg-a", "pg-b"]);

    await removeGroupMember(store.db, after, { id: a, name: "pg-a" });
    expect((await getPlacementGroup(store.db, id)).members).toEqual(["pg-b"]);
    // A deleted VM leaves its groups.
    await deleteVmRow(store.db, await getVm(store.db, b));
    expect((await getPlacementGroup(store.db, id)).members).toEqual([]);
    await deletePlacementGroup(store.db, await getPlacementGroup(store.db, id));
    expect((await listPlacementGroups(store.db)).map((x) => x.name)).not.toContain("pg-web");
    expect((await refusal(getPlacementGroup(store.db, "pg-web"))).code).toBe("NOVA_NOT_FOUND");
  });

  it("merges a host's labels, sets its site and weight, and refuses a weight out of range", async () => {
    const id = await addHost(store.db, "lbl-h");
    const host = { id, name: "lbl-h" };
    await updateHostLabels(store.db, host, { disk: "ssd", zone: "a" }, []);
    await updateHostLabels(store.db, host, { gpu: "yes" }, ["zone"]);
    await updateHostPlacement(store.db, host, { site: "east", weight: -0.5 });
    expect(await getHost(store.db, id)).toMatchObject({
      labels: { disk: "ssd", gpu: "yes" },
      site: "east",
      placementWeight: -0.5,
    });
    await expect(updateHostPlacement(store.db, host, { weight: 3 })).rejects.toThrow();
    expect((await getHost(store.db, id)).placementWeight).toBe(-0.5);
  });

  it("a drain's check places through ITP with the groups: an anti-affine pair apart, or refused", async () => {
    // Only this test's hosts take VMs.
    await store.db.query("UPDATE hosts SET cordoned = true");
    const live = async (name: string) =>
      (
        await upsertHost(store.db, {
          name,
          agentUrl: "http://127.0.0.1:1",
          certificate: null,
          agentVersion: "0",
          capacity: { ...TEST_CAPACITY, memoryMiB: 4096 },
          qemu: QEMU_10_0_2,
        })
      ).id;
    const src = await live("dr-src");
    const big = await live("dr-big");
    const img = await addImage(store.db, "dr-img");
    const running = async (name: string) => {
      const id = await addVm(store.db, name, img, src);
      await transitionVm(store.db, await getVm(store.db, id), "starting", "t");
      await transitionVm(store.db, await getVm(store.db, id), "running", "t");
      return id;
    };
    const a = await running("dr-a");
    const b = await running("dr-b");
    await insertPlacementGroup(store.db, {
      name: "dr-pair",
      policy: "anti-affinity",
      scope: "host",
      enforcement: "hard",
      memberIds: [a, b],
    });
    const drains = new DrainService(store, () => {}, new ClusterPlacement());
    // One other host: both would land on it together, which the group forbids.
    const refused = await refusal(drains.start("dr-src", {}, "t"));
    expect(refused.code).toBe("NOVA_DRAIN_NO_TARGET");
    expect(refused.message).toContain("cannot take VM dr-b");
    expect(refused.message).toContain("anti-affinity: 1 host");
    expect(refused.details).toMatchObject({ placed: [{ vm: "dr-a", host: "dr-big" }] });
    expect((await getHost(store.db, src)).cordoned).toBe(false);

    await live("dr-other");
    const d = await drains.start("dr-src", {}, "t");
    expect(d.vms.map((e) => e.vm)).toEqual(["dr-a", "dr-b"]);
    expect((await getHost(store.db, big)).cordoned).toBe(false);
  });
});
