import { describe, expect, it } from "vitest";
import type { QemuMachineFacts } from "../../lib/qemu-support.js";
import {
  DEFAULT_POLICY,
  type ItpHost,
  type ItpVm,
  type PlacementGroup,
  type PlacementPolicy,
} from "./model.js";
import { explain, place } from "./pipeline.js";
import { assertConsistent, assertMembersExist } from "./rules.js";
import { PlacementState } from "./state.js";

const QEMU10: QemuMachineFacts = {
  major: 10,
  minor: 0,
  micro: 2,
  machineTypes: ["pc-q35-10.0", "pc-q35-9.2", "pc-q35-7.2"],
  q35Alias: "pc-q35-10.0",
};
const QEMU72: QemuMachineFacts = {
  major: 7,
  minor: 2,
  micro: 0,
  machineTypes: ["pc-q35-7.2"],
  q35Alias: "pc-q35-7.2",
};

function host(name: string, over: Partial<ItpHost> = {}): ItpHost {
  return {
    id: `id-${name}`,
    name,
    site: "a",
    labels: {},
    liveness: "alive",
    cordoned: false,
    maintenance: false,
    memoryMiB: { total: 8192, used: 0 },
    vcpus: { total: 4, used: 0 },
    qemu: QEMU10,
    cpuModel: "host",
    predictedLoad: null,
    weight: 0,
    ...over,
  };
}

function vm(name: string, over: Partial<ItpVm> = {}): ItpVm {
  return { name, memoryMiB: 1024, vcpus: 1, imageHostIds: null, imageName: "img", hostSelector: {}, ...over };
}

const group = (name: string, over: Partial<PlacementGroup>): PlacementGroup => ({
  name,
  policy: "anti-affinity",
  scope: "host",
  enforcement: "hard",
  members: [],
  ...over,
});

const names = (hosts: ItpHost[], s: PlacementState, v: ItpVm, p: PlacementPolicy = DEFAULT_POLICY) =>
  hosts[place(s, v, p)]!.name;

describe("ITP feasibility checks", () => {
  it("rejects each host for the first check it fails, with the reason, and counts them", () => {
    const hosts = [
      host("dead", { liveness: "dead" }),
      host("cordoned", { cordoned: true }),
      host("draining", { maintenance: true }),
      host("current"),
      host("no-qemu", { qemu: null }),
      host("old-qemu", { qemu: QEMU72 }),
      host("other-cpu", { cpuModel: "x86-64-v2" }),
      host("no-image"),
      host("other-site", { site: "b" }),
      host("unlabelled"),
      host("full", { memoryMiB: { total: 8192, used: 7680 } }),
      host("busy", { vcpus: { total: 1, used: 4 } }),
      host("good", { labels: { disk: "ssd" } }),
    ];
    for (const h of hosts.slice(0, 12)) if (h.name !== "unlabelled") h.labels = { disk: "ssd" };
    const imageHostIds = new Set(hosts.filter((h) => h.name !== "no-image").map((h) => h.id));
    const s = new PlacementState(hosts, [], new Map());
    const v = vm("web", {
      machineType: "pc-q35-10.0",
      cpuModel: "host",
      imageHostIds,
      site: "a",
      hostSelector: { disk: "ssd" },
      fromHostId: "id-current",
    });
    const e = explain(s, v, DEFAULT_POLICY);
    expect(e.chosen).toBe("good");
    const by = Object.fromEntries(e.hosts.map((x) => [x.host, x.feasible ? "ok" : x.rejectedBy]));
    expect(by).toEqual({
      dead: "alive",
      cordoned: "schedulable",
      draining: "schedulable",
      current: "current-host",
      "no-qemu": "qemu",
      "old-qemu": "qemu",
      "other-cpu": "cpu-model",
      "no-image": "image",
      "other-site": "site",
      unlabelled: "host-labels",
      full: "memory",
      busy: "vcpus",
      good: "ok",
    });
    const why = Object.fromEntries(e.hosts.filter((x) => !x.feasible).map((x) => [x.host, x.reason]));
    expect(why.draining).toBe("host is being drained");
    expect(why["old-qemu"]).toMatch(/pc-q35-10\.0/);
    expect(why.full).toBe("only 512 MiB free, needs 1024");
    expect(why.unlabelled).toBe("lacks label disk=ssd");
    expect(why.busy).toMatch(/only 0 vCPUs free \(×4 overcommit\), needs 1/);
    expect(e.rejected).toMatchObject({ alive: 1, schedulable: 2, memory: 1, vcpus: 1 });
  });

  it("refuses with each failed check's count and the largest free host, naming no host it did not try", () => {
    const hosts = [
      host("h1", { memoryMiB: { total: 2048, used: 1024 } }),
      host("h2", { memoryMiB: { total: 2048, used: 512 } }),
      host("h3", { cordoned: true }),
    ];
    const s = new PlacementState(hosts, [], new Map());
    let err: unknown;
    try {
      place(s, vm("big", { memoryMiB: 4096 }), DEFAULT_POLICY);
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: "NOVA_NO_CAPACITY" });
    const message = (err as Error).message;
    expect(message).toContain("memory: 2 hosts, schedulable: 1 host");
    expect(message).toContain("the largest free host is h2 with 1536 MiB free");
    expect((err as { details: { rejected: unknown } }).details.rejected).toEqual({
      memory: 2,
      schedulable: 1,
    });
    const empty = new PlacementState([], [], new Map());
    expect(() => place(empty, vm("x"), DEFAULT_POLICY)).toThrow(/the cluster has no hosts/);
  });

  it("honours memory overcommit and vCPU overcommit", () => {
    const hosts = [host("h", { memoryMiB: { total: 1024, used: 1024 }, vcpus: { total: 1, used: 1 } })];
    const s = new PlacementState(hosts, [], new Map());
    expect(() => place(s, vm("x"), DEFAULT_POLICY)).toThrow(/memory: 1 host/);
    expect(names(hosts, s, vm("x"), { ...DEFAULT_POLICY, memoryOvercommit: 2 })).toBe("h");
    expect(() => place(s, vm("x", { vcpus: 4 }), { ...DEFAULT_POLICY, memoryOvercommit: 2 })).toThrow(
      /vcpus: 1 host/,
    );
  });
});

describe("ITP placement groups", () => {
  const hosts = () => [host("h1", { site: "a" }), host("h2", { site: "a" }), host("h3", { site: "b" })];

  it("keeps hard anti-affinity members apart per host and per site", () => {
    const hs = hosts();
    const g = group("web", { members: ["w1", "w2", "w3"] });
    const s = new PlacementState(hs, [g], new Map([["w1", "id-h1"]]));
    const e = explain(s, vm("w2"), DEFAULT_POLICY);
    expect(e.hosts.find((x) => x.host === "h1")).toMatchObject({
      feasible: false,
      rejectedBy: "anti-affinity",
      reason: "anti-affinity group web has a member on this host",
    });
    const perSite = group("sites", { scope: "site", members: ["w1", "w2"] });
    const s2 = new PlacementState(hs, [perSite], new Map([["w1", "id-h1"]]));
    expect(names(hs, s2, vm("w2"))).toBe("h3");
    expect(explain(s2, vm("w2"), DEFAULT_POLICY).hosts.find((x) => x.host === "h2")).toMatchObject({
      reason: "anti-affinity group sites has a member in site a",
    });
  });

  it("keeps hard affinity members together per host and per site", () => {
    const hs = hosts();
    const g = group("db", { policy: "affinity", members: ["d1", "d2"] });
    const s = new PlacementState(hs, [g], new Map([["d1", "id-h3"]]));
    expect(names(hs, s, vm("d2"))).toBe("h3");
    const site = group("dbsite", { policy: "affinity", scope: "site", members: ["d1", "d2"] });
    const s2 = new PlacementState(hs, [site], new Map([["d1", "id-h1"]]));
    const e = explain(s2, vm("d2"), DEFAULT_POLICY);
    expect(e.hosts.find((x) => x.host === "h3")).toMatchObject({ rejectedBy: "affinity" });
    // No member placed yet: the rule binds nothing.
    const s3 = new PlacementState(hs, [g], new Map());
    expect(explain(s3, vm("d1"), DEFAULT_POLICY).hosts.every((x) => x.feasible)).toBe(true);
  });

  it("scores soft rules without filtering", () => {
    const hs = hosts();
    const soft = group("cache", { policy: "affinity", enforcement: "soft", members: ["c1", "c2"] });
    const s = new PlacementState(hs, [soft], new Map([["c1", "id-h2"]]));
    expect(names(hs, s, vm("c2"))).toBe("h2");
    const apart = group("spread", { enforcement: "soft", members: ["c1", "c2"] });
    const s2 = new PlacementState([host("h1"), host("h2")], [apart], new Map([["c1", "id-h1"]]));
    const e = explain(s2, vm("c2"), DEFAULT_POLICY);
    expect(e.chosen).toBe("h2");
    expect(e.hosts.find((x) => x.host === "h1")).toMatchObject({
      feasible: true,
      scores: { softAffinity: -1 },
    });
  });

  it("does not count a moving VM's own presence against it", () => {
    const hs = hosts();
    const g = group("web", { members: ["w1", "w2"] });
    const s = new PlacementState(hs, [g], new Map([["w1", "id-h1"]]));
    // w1 moving off h1: its own group does not forbid anything.
    const e = explain(s, vm("w1", { fromHostId: "id-h1" }), DEFAULT_POLICY);
    expect(
      e.hosts
        .filter((x) => x.feasible)
        .map((x) => x.host)
        .sort(),
    ).toEqual(["h2", "h3"]);
  });

  it("refuses contradictory hard rules and members that are not VMs", () => {
    const together = group("t", { policy: "affinity", members: ["a", "b", "c"] });
    const apart = group("p", { members: ["b", "c"] });
    expect(() => assertConsistent([together, apart])).toThrow(
      /Placement groups t .* and p .* both hold b, c/,
    );
    const apartSites = group("ps", { scope: "site", members: ["a", "b"] });
    expect(() => assertConsistent([together, apartSites])).toThrow(/NOVA_PLACEMENT_CONFLICT|both hold a, b/);
    // Together in a site, apart on hosts: satisfiable.
    const siteTogether = group("st", { policy: "affinity", scope: "site", members: ["a", "b"] });
    expect(() => assertConsistent([siteTogether, apart])).not.toThrow();
    // Soft rules never contradict.
    expect(() => assertConsistent([together, { ...apart, enforcement: "soft" }])).not.toThrow();
    // One shared VM is no contradiction.
    expect(() => assertConsistent([together, group("one", { members: ["c", "z"] })])).not.toThrow();
    expect(() => assertMembersExist(together, new Set(["a", "b"]))).toThrow(/a VM that does not exist: c/);
  });
});

describe("ITP scorers and selection", () => {
  it("spreads to the emptiest host or packs the fullest that fits", () => {
    const hs = [
      host("h1", { memoryMiB: { total: 8192, used: 4096 } }),
      host("h2"),
      host("h3", { memoryMiB: { total: 8192, used: 6144 } }),
    ];
    const s = new PlacementState(hs, [], new Map());
    const onlyFill = { fill: 1, load: 0, softAffinity: 0, migrationCost: 0, operator: 0 };
    expect(names(hs, s, vm("x"), { ...DEFAULT_POLICY, weights: onlyFill })).toBe("h2");
    expect(names(hs, s, vm("x"), { ...DEFAULT_POLICY, strategy: "binpack", weights: onlyFill })).toBe("h3");
  });

  it("prefers a lightly loaded host, a move within the site, and an operator's weight", () => {
    const hs = [host("h1", { predictedLoad: 0.9 }), host("h2", { predictedLoad: 0.1 })];
    const s = new PlacementState(hs, [], new Map());
    expect(names(hs, s, vm("x"))).toBe("h2");
    const sites = [host("src", { site: "a" }), host("far", { site: "b" }), host("near", { site: "a" })];
    const s2 = new PlacementState(sites, [], new Map([["m", "id-src"]]));
    expect(names(sites, s2, vm("m", { fromHostId: "id-src" }))).toBe("near");
    const weighted = [host("h1"), host("h2", { weight: 1 })];
    expect(names(weighted, new PlacementState(weighted, [], new Map()), vm("x"))).toBe("h2");
  });

  it("breaks ties by host order, and a batch sees its own placements", () => {
    const hs = [host("h1"), host("h2")];
    const s = new PlacementState(hs, [], new Map());
    const first = place(s, vm("a"), DEFAULT_POLICY);
    expect(hs[first]!.name).toBe("h1");
    s.commit("a", first, 1024, 1);
    expect(names(hs, s, vm("b"))).toBe("h2");
    // Moving a VM frees where it was.
    s.commit("a", 1, 1024, 1);
    expect(s.memUsed[0]).toBe(0);
    expect(s.memUsed[1]).toBe(1024);
    expect(s.hostOf("a")).toBe(1);
  });
});
