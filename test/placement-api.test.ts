// Placement wired into the server (issue 17), over REST on a real PostgreSQL server and on
// PGlite: host labels, sites and weights; placement groups as resources, refused with
// nothing stored when they name unknown VMs or contradict each other; VM create placing
// by host selector, site and group (anti-affinity keeps a pair apart, also for a
// migration's and a drain's targets); `?dryRun=true` creating nothing and showing every
// host's verdict; a refused placement naming the check and how many hosts it turned away;
// and `placement explain` of an existing VM. No QEMU runs (hosts are rows; nothing listens
// at their agents, so the reconciler's calls fail and are retried).
import { mkdtemp, rm } from "node:fs/promises";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Host } from "../src/api/types/hosts.js";
import type { PlacementExplanation, PlacementGroup, VmDryRun } from "../src/api/types/placement.js";
import type { Vm } from "../src/api/types/vms.js";
import { upsertHost } from "../src/cluster/store/hosts.js";
import { addImageLocation, getImage, insertImage } from "../src/cluster/store/images.js";
import { getVm, transitionVm } from "../src/cluster/store/vms.js";
import { QEMU_10_0_2 } from "../src/lib/qemu-info.test-util.js";
import { type RunningServer, startServer } from "../src/server/server-process.js";
import { ENGINES, type TestDatabase } from "./helpers/databases.js";
import { TEST_CAPACITY, TEST_IMAGE } from "./helpers/store-fixtures.js";
import { tlsApi } from "./helpers/tls-callers.js";

interface ApiError {
  error: { code: string; message: string; details: Record<string, unknown> };
}

describe.each(ENGINES)("placement over REST on $engine", ({ engine, create }) => {
  let tdb: TestDatabase;
  let dir: string;
  let server: RunningServer;
  let admin: string;
  let tls: ReturnType<typeof tlsApi>;
  const api = <T>(method: string, route: string, body?: unknown) =>
    tls.api<T & ApiError>(method, route, admin, body);
  const hostIds = new Map<string, string>();

  beforeAll(async () => {
    tdb = await create();
    dir = await mkdtemp("/tmp/nc-placement-api-");
    server = await startServer({
      dataDir: dir,
      port: 0,
      heartbeatTimeoutMs: 600_000,
      execWorkers: false,
      ...(engine === "postgres" ? { databaseUrl: tdb.url! } : {}),
      logger: pino({ level: "silent" }),
    });
    admin = server.created.admin!;
    tls = tlsApi(server);
    const imageId = await insertImage(server.store.db, {
      name: "guest",
      diskDigest: "sha256:d",
      ...TEST_IMAGE,
    });
    // h1 is the biggest: spread sends a VM there unless a rule says otherwise.
    for (const [name, memoryMiB] of [
      ["h1", 8192],
      ["h2", 4096],
      ["h3", 4096],
    ] as const) {
      const { id } = await upsertHost(server.store.db, {
        name,
        agentUrl: "http://127.0.0.1:9",
        certificate: null,
        agentVersion: "0",
        capacity: { ...TEST_CAPACITY, memoryMiB },
        qemu: QEMU_10_0_2,
      });
      hostIds.set(name, id);
      await addImageLocation(server.store.db, imageId, id);
    }
  });
  afterAll(async () => {
    await server?.close();
    await tdb?.drop();
    await rm(dir, { recursive: true, force: true });
  });

  const createVm = (name: string, extra: Record<string, unknown> = {}, query = "") =>
    api<Vm>("POST", `/v1/vms${query}`, { name, image: "guest", memoryMiB: 128, start: false, ...extra });

  it("sets a host's labels, site and weight, shows them on the host, and refuses bad ones", async () => {
    const labelled = await api<Host>("POST", "/v1/hosts/h2/labels", { set: { disk: "ssd", zone: "a" } });
    expect(labelled.status).toBe(200);
    expect(labelled.body.labels).toEqual({ disk: "ssd", zone: "a" });
    const removed = await api<Host>("POST", "/v1/hosts/h2/labels", { remove: ["zone"] });
    expect(removed.body.labels).toEqual({ disk: "ssd" });
    expect((await api<Host>("PUT", "/v1/hosts/h3/site", { site: "west" })).body.site).toBe("west");
    expect((await api<Host>("PUT", "/v1/hosts/h3/weight", { weight: 0.5 })).body.placementWeight).toBe(0.5);
    const h3 = (await api<Host>("GET", "/v1/hosts/h3")).body;
    expect(h3).toMatchObject({ site: "west", labels: {}, placementWeight: 0.5, allocatedVcpus: 0 });

    const both = await api("POST", "/v1/hosts/h2/labels", { set: { disk: "hdd" }, remove: ["disk"] });
    expect(both.status).toBe(422);
    expect(both.body.error.code).toBe("NOVA_UNPROCESSABLE");
    const badKey = await api("POST", "/v1/hosts/h2/labels", { set: { "Bad Key": "x" } });
    expect(badKey.status).toBe(400);
    const badWeight = await api("PUT", "/v1/hosts/h2/weight", { weight: 2 });
    expect(badWeight.status).toBe(400);
    const unknown = await api("PUT", "/v1/hosts/nope/site", { site: "west" });
    expect(unknown.body.error.code).toBe("NOVA_NOT_FOUND");
    expect((await api<Host>("GET", "/v1/hosts/h2")).body.labels).toEqual({ disk: "ssd" });
    await api("PUT", "/v1/hosts/h3/weight", { weight: 0 });
  });

  it("places by host selector and site, and refuses naming the check and how many hosts it turned away", async () => {
    const ssd = await createVm("sel-ssd", { hostSelector: { disk: "ssd" } });
    expect(ssd.status).toBe(201);
    expect(ssd.body).toMatchObject({ host: "h2", hostSelector: { disk: "ssd" }, requiredSite: null });
    const west = await createVm("sel-west", { site: "west" });
    expect(west.body).toMatchObject({ host: "h3", requiredSite: "west" });

    const none = await createVm("sel-none", { hostSelector: { gpu: "yes" } });
    expect(none.status).toBe(422);
    expect(none.body.error.code).toBe("NOVA_NO_CAPACITY");
    expect(none.body.error.message).toMatch(/^No host can run VM sel-none .*: host-labels: 3 hosts;/);
    expect(none.body.error.details).toMatchObject({ rejected: { "host-labels": 3 } });
    expect((await api("GET", "/v1/vms/sel-none")).status).toBe(404);
  });

  it("keeps placement groups as resources: unknown VMs and contradictions are refused with nothing stored", async () => {
    await createVm("g-a");
    await createVm("g-b");
    const unknown = await api("POST", "/v1/placement-groups", {
      name: "web",
      policy: "anti-affinity",
      members: ["g-a", "ghost"],
    });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe("NOVA_NOT_FOUND");
    expect(unknown.body.error.message).toContain("ghost");

    const made = await api<PlacementGroup>("POST", "/v1/placement-groups", {
      name: "web",
      policy: "anti-affinity",
      members: ["g-a", "g-b"],
    });
    expect(made.status).toBe(201);
    expect(made.body).toMatchObject({
      name: "web",
      policy: "anti-affinity",
      scope: "host",
      enforcement: "hard",
      members: ["g-a", "g-b"],
    });

    const conflict = await api("POST", "/v1/placement-groups", {
      name: "together",
      policy: "affinity",
      members: ["g-a", "g-b"],
    });
    expect(conflict.status).toBe(422);
    expect(conflict.body.error.code).toBe("NOVA_PLACEMENT_CONFLICT");
    expect(conflict.body.error.message).toMatch(/together .* web .* g-a, g-b/);
    const soft = await api<PlacementGroup>("POST", "/v1/placement-groups", {
      name: "together",
      policy: "affinity",
      enforcement: "soft",
      members: ["g-a"],
    });
    expect(soft.status).toBe(201);
    const list = (await api<{ groups: PlacementGroup[] }>("GET", "/v1/placement-groups")).body.groups;
    expect(list.map((g) => g.name)).toEqual(["together", "web"]);

    const added = await api<PlacementGroup>("POST", "/v1/placement-groups/together/members", {
      vms: ["g-b"],
    });
    expect(added.body.members).toEqual(["g-a", "g-b"]);
    const removed = await api<PlacementGroup>("DELETE", "/v1/placement-groups/together/members/g-b");
    expect(removed.body.members).toEqual(["g-a"]);
    const notMember = await api("DELETE", "/v1/placement-groups/together/members/g-b");
    expect(notMember.body.error.code).toBe("NOVA_NOT_FOUND");
    expect((await api("DELETE", "/v1/placement-groups/together")).status).toBe(200);
    expect((await api("GET", "/v1/placement-groups/together")).status).toBe(404);
  });

  it("creates a VM into a group: a hard anti-affine member never lands with another", async () => {
    await api("POST", "/v1/placement-groups", { name: "db", policy: "anti-affinity" });
    const hosts = new Set<string>();
    for (const n of ["db-1", "db-2", "db-3"]) {
      const v = await createVm(n, { groups: ["db"] });
      expect(v.status).toBe(201);
      hosts.add(v.body.host!);
    }
    expect(hosts.size).toBe(3);
    const fourth = await createVm("db-4", { groups: ["db"] });
    expect(fourth.status).toBe(422);
    expect(fourth.body.error.message).toContain("anti-affinity: 3 hosts");
    expect((await api<PlacementGroup>("GET", "/v1/placement-groups/db")).body.members).toEqual([
      "db-1",
      "db-2",
      "db-3",
    ]);
    const noGroup = await createVm("db-5", { groups: ["nope"] });
    expect(noGroup.body.error.code).toBe("NOVA_NOT_FOUND");
    expect((await api("GET", "/v1/vms/db-5")).status).toBe(404);
  });

  it("a dry run creates nothing and shows the chosen host and every host's verdict", async () => {
    const dry = await tls.api<VmDryRun>("POST", "/v1/vms?dryRun=true", admin, {
      name: "dry",
      image: "guest",
      memoryMiB: 128,
      hostSelector: { disk: "ssd" },
    });
    expect(dry.status).toBe(200);
    expect(dry.body).toMatchObject({ dryRun: true, vm: "dry", host: "h2" });
    const verdicts = Object.fromEntries(dry.body.explanation.hosts.map((v) => [v.host, v]));
    expect(verdicts.h1).toMatchObject({
      feasible: false,
      rejectedBy: "host-labels",
      reason: "lacks label disk=ssd",
    });
    expect(verdicts.h2).toMatchObject({ feasible: true });
    expect(Object.keys((verdicts.h2 as { scores: object }).scores).sort()).toEqual(
      ["fill", "load", "migrationCost", "operator", "softAffinity"].sort(),
    );
    expect(dry.body.explanation.policy).toEqual({
      strategy: "spread",
      memoryOvercommit: 1,
      vcpuOvercommit: 4,
    });
    expect((await api("GET", "/v1/vms/dry")).status).toBe(404);
    const none = await tls.api<VmDryRun>("POST", "/v1/vms?dryRun=true", admin, {
      name: "dry",
      image: "guest",
      site: "nowhere",
    });
    expect(none.status).toBe(200);
    expect(none.body.host).toBeNull();
    expect(none.body.explanation.rejected).toEqual({ site: 3 });
  });

  it("explains where an existing VM could move, and migrates it only where its group allows", async () => {
    await api("POST", "/v1/placement-groups", { name: "pair", policy: "anti-affinity" });
    const a = await createVm("pair-a", { groups: ["pair"], start: true });
    const b = await createVm("pair-b", { groups: ["pair"], start: true });
    expect(a.body.host).not.toBe(b.body.host);
    for (const name of ["pair-a", "pair-b"]) {
      // No agent runs: move the rows to running as the reconciler would.
      await transitionVm(server.store.db, await getVm(server.store.db, name), "starting", "t");
      await transitionVm(server.store.db, await getVm(server.store.db, name), "running", "t");
    }
    const e = await api<PlacementExplanation>("GET", "/v1/vms/pair-a/placement");
    expect(e.status).toBe(200);
    const verdict = Object.fromEntries(e.body.hosts.map((v) => [v.host, v.feasible ? "ok" : v.rejectedBy]));
    expect(verdict[a.body.host!]).toBe("current-host");
    expect(verdict[b.body.host!]).toBe("anti-affinity");
    const third = ["h1", "h2", "h3"].find((h) => h !== a.body.host && h !== b.body.host)!;
    expect(e.body.chosen).toBe(third);

    const onto = await api("POST", "/v1/vms/pair-a/migrations", { targetHost: b.body.host });
    expect(onto.status).toBe(422);
    expect(onto.body.error.code).toBe("NOVA_NO_CAPACITY");
    expect(onto.body.error.message).toContain("anti-affinity");
    const m = await api<{ targetHost: string }>("POST", "/v1/vms/pair-a/migrations", {});
    expect(m.status).toBe(202);
    expect(m.body.targetHost).toBe(third);
  });

  it("moves a VM live only to a host that starts VMs with its CPU model (a KVM host is refused for a TCG guest)", async () => {
    const vm = await createVm("cpu-guest", { start: true });
    await transitionVm(server.store.db, await getVm(server.store.db, "cpu-guest"), "starting", "t");
    await transitionVm(server.store.db, await getVm(server.store.db, "cpu-guest"), "running", "t");
    // The roomiest host by far, so spread would choose it.
    const { id: k1Id } = await upsertHost(server.store.db, {
      name: "k1",
      agentUrl: "http://127.0.0.1:9",
      certificate: null,
      agentVersion: "0",
      capacity: { ...TEST_CAPACITY, accel: "kvm", memoryMiB: 65_536 },
      qemu: QEMU_10_0_2,
    });
    await addImageLocation(server.store.db, (await getImage(server.store.db, "guest")).id, k1Id);
    const e = await api<PlacementExplanation>("GET", "/v1/vms/cpu-guest/placement");
    expect(e.status).toBe(200);
    expect(e.body.hosts.find((v) => v.host === "k1")).toMatchObject({
      feasible: false,
      rejectedBy: "cpu-model",
      reason: expect.stringContaining("starts VMs with CPU model host, the VM runs with max"),
    });
    expect(e.body.chosen).not.toBe("k1");

    const onto = await api("POST", "/v1/vms/cpu-guest/migrations", { targetHost: "k1" });
    expect(onto.status).toBe(422);
    expect(onto.body.error.code).toBe("NOVA_NO_CAPACITY");
    expect(onto.body.error.message).toContain("Host k1 cannot run VM cpu-guest");
    expect(onto.body.error.details).toMatchObject({ rejectedBy: "cpu-model" });
    expect((await api("GET", "/v1/vms/cpu-guest/migrations")).body).toMatchObject({ migrations: [] });
    // A new VM (not a live move) may land there.
    const fresh = await createVm("cpu-fresh");
    expect(fresh.status).toBe(201);
    expect(fresh.body.host).toBe("k1");
    expect(vm.body.host).not.toBe("k1");
  });
});
