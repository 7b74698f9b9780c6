import { describe, expect, it } from "vitest";
import {
  DEFAULT_REBALANCE_SETTINGS,
  planRebalance,
  type RebalanceHost,
  type RebalanceInput,
  type RebalanceVm,
} from "./rebalance-plan.js";

const NOW = 10_000_000;
const on = { ...DEFAULT_REBALANCE_SETTINGS, enabled: true, holdMs: 60_000 };

const host = (id: string, cpuCores: number | null, extra: Partial<RebalanceHost> = {}): RebalanceHost => ({
  id,
  name: id,
  vcpus: 4,
  eligible: true,
  cpuCores,
  ...extra,
});

const vm = (
  name: string,
  hostId: string,
  cpuCores: number | null,
  extra: Partial<RebalanceVm> = {},
): RebalanceVm => ({
  id: `id-${name}`,
  name,
  hostId,
  movable: true,
  cpuCores,
  lastMovedAt: null,
  allowedTargets: new Set(["a", "b", "c"].filter((h) => h !== hostId)),
  ...extra,
});

/** a at 0.9 (two VMs of 1.8 cores), b and c idle; a overloaded long enough. */
function input(over: Partial<RebalanceInput> = {}): RebalanceInput {
  return {
    now: NOW,
    settings: on,
    hosts: [host("a", 3.6), host("b", 0.2), host("c", 0.4)],
    vms: [vm("v1", "a", 1.8), vm("v2", "a", 1.8), vm("w1", "b", 0.2), vm("x1", "c", 0.4)],
    activeMigrations: [],
    overloadedSince: new Map([["a", NOW - 120_000]]),
    ...over,
  };
}

describe("planRebalance", () => {
  it("moves a VM off a host overloaded for the hold, to the host that narrows the gap most", () => {
    const plan = planRebalance(input());
    expect(plan.moves).toEqual([
      {
        vmId: "id-v1",
        vm: "v1",
        fromHostId: "a",
        from: "a",
        toHostId: "b",
        to: "b",
        before: { from: 0.9, to: 0.05 },
        after: { from: 0.45, to: 0.5 },
        gain: 0.8,
      },
    ]);
    expect(plan.mean).toBe(0.35);
    expect(plan.overloadedSince.get("a")).toBe(NOW - 120_000);
    expect(plan.hosts.find((h) => h.host === "a")?.note).toMatch(/moves v1 to b/);
  });

  it("moves nothing while it is off, and says how to turn it on", () => {
    const plan = planRebalance(input({ settings: { ...on, enabled: false } }));
    expect(plan.moves).toEqual([]);
    expect(plan.idle).toMatch(/rebalancer set --enable/);
    // The hold is still tracked, so turning it on does not restart the clock.
    expect(plan.overloadedSince.get("a")).toBe(NOW - 120_000);
  });

  it("starts the hold on the first overloaded pass and moves nothing before it ends", () => {
    const first = planRebalance(input({ overloadedSince: new Map() }));
    expect(first.moves).toEqual([]);
    expect(first.overloadedSince.get("a")).toBe(NOW);
    expect(first.hosts.find((h) => h.host === "a")?.note).toMatch(/overloaded for 0 s of the 60 s hold/);
    const later = planRebalance(input({ now: NOW + 60_000, overloadedSince: first.overloadedSince }));
    expect(later.moves.map((m) => m.vm)).toEqual(["v1"]);
  });

  it("forgets the hold when the host stops being overloaded (a burst shorter than the hold)", () => {
    const calm = planRebalance(input({ hosts: [host("a", 1.2), host("b", 0.2), host("c", 0.4)] }));
    expect(calm.overloadedSince.has("a")).toBe(false);
    expect(calm.moves).toEqual([]);
  });

  it("never calls a host overloaded at or below minUtilization, however uneven", () => {
    const plan = planRebalance(
      input({ hosts: [host("a", 1.9), host("b", 0), host("c", 0)], overloadedSince: new Map([["a", 0]]) }),
    );
    expect(plan.overloadedSince.size).toBe(0);
    expect(plan.moves).toEqual([]);
  });

  it("refuses a move that would not narrow the gap by the margin, or would overload the target", () => {
    // a at 0.95: big (0.9) would leave b overloaded; tiny (0.05) narrows a–b's gap by 0.1.
    const world = {
      hosts: [host("a", 3.8), host("b", 0.2), host("c", 0.2)],
      vms: [vm("big", "a", 3.6), vm("tiny", "a", 0.2)],
    };
    const loose = planRebalance(input({ ...world, settings: { ...on, margin: 0.05 } }));
    expect(loose.moves.map((m) => [m.vm, m.to, m.gain])).toEqual([["tiny", "b", 0.1]]);
    const strict = planRebalance(input({ ...world, settings: { ...on, margin: 0.15 } }));
    expect(strict.moves).toEqual([]);
    expect(strict.hosts.find((h) => h.host === "a")?.note).toMatch(/narrow the gap by the margin/);
  });

  it("never moves a VM straight back while loads hold still, even with no cooldown (random worlds)", () => {
    let seed = 7;
    const rand = (): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const settings = {
      ...on,
      holdMs: 0,
      cooldownMs: 0,
      threshold: 0.1,
      minUtilization: 0.2,
      maxPerHost: 9,
      maxPerCluster: 99,
    };
    let checked = 0;
    for (let world = 0; world < 200; world++) {
      const ids = ["a", "b", "c", "d", "e"];
      let vms: RebalanceVm[] = [];
      for (let i = 0; i < 12; i++) {
        const hostId = ids[Math.floor(rand() * ids.length)]!;
        vms.push(vm(`v${i}`, hostId, Math.round(rand() * 20) / 10, { allowedTargets: new Set(ids) }));
      }
      const hosts = (): RebalanceHost[] =>
        ids.map((id) =>
          host(
            id,
            vms.filter((v) => v.hostId === id).reduce((t, v) => t + (v.cpuCores ?? 0), 0),
          ),
        );
      const lastFrom = new Map<string, string>();
      for (let pass = 0; pass < 6; pass++) {
        const plan = planRebalance({
          now: NOW,
          settings,
          hosts: hosts(),
          vms,
          activeMigrations: [],
          overloadedSince: new Map(ids.map((id) => [id, 0])),
        });
        for (const m of plan.moves) {
          expect(lastFrom.get(m.vmId), `${m.vm} went back to ${m.to}`).not.toBe(m.toHostId);
          lastFrom.set(m.vmId, m.fromHostId);
          checked++;
        }
        vms = vms.map((v) => {
          const m = plan.moves.find((x) => x.vmId === v.id);
          return m ? { ...v, hostId: m.toHostId } : v;
        });
      }
    }
    expect(checked).toBeGreaterThan(50);
  });

  it("leaves a VM in its cooldown where it is", () => {
    const plan = planRebalance(
      input({
        vms: [
          vm("v1", "a", 1.8, { lastMovedAt: NOW - 60_000 }),
          vm("v2", "a", 1.8, { lastMovedAt: NOW - 1 }),
        ],
      }),
    );
    expect(plan.moves).toEqual([]);
    expect(plan.hosts.find((h) => h.host === "a")?.note).toMatch(/cooldown/);
  });

  it("moves only running VMs with CPU figures", () => {
    const plan = planRebalance(input({ vms: [vm("v1", "a", 1.8, { movable: false }), vm("v2", "a", null)] }));
    expect(plan.moves).toEqual([]);
  });

  it("keeps to the hosts placement allows", () => {
    const plan = planRebalance(
      input({
        vms: [
          vm("v1", "a", 1.8, { allowedTargets: new Set(["c"]) }),
          vm("v2", "a", 1.8, { allowedTargets: new Set() }),
        ],
      }),
    );
    expect(plan.moves.map((m) => [m.vm, m.to])).toEqual([["v1", "c"]]);
  });

  it("respects the caps per host and per cluster, counting migrations it did not start", () => {
    const busyA = planRebalance(input({ activeMigrations: [{ sourceHostId: "a", targetHostId: "c" }] }));
    expect(busyA.moves).toEqual([]);
    expect(busyA.hosts.find((h) => h.host === "a")?.note).toMatch(/at most 1/);
    const busyB = planRebalance(input({ activeMigrations: [{ sourceHostId: "c", targetHostId: "b" }] }));
    expect(busyB.moves).toEqual([]);
    const full = planRebalance(
      input({
        settings: { ...on, maxPerCluster: 1 },
        activeMigrations: [{ sourceHostId: "x", targetHostId: "y" }],
      }),
    );
    expect(full.moves).toEqual([]);
    expect(full.hosts.find((h) => h.host === "a")?.note).toMatch(/cluster runs 1 migrations/);
  });

  it("moves from each overloaded host, the busiest first, counting its own earlier moves", () => {
    const plan = planRebalance(
      input({
        hosts: [host("a", 3.6), host("b", 3.8), host("c", 0), host("d", 0)],
        vms: [
          vm("v1", "a", 1.8, { allowedTargets: new Set(["c", "d"]) }),
          vm("v2", "a", 1.8, { allowedTargets: new Set(["c", "d"]) }),
          vm("u1", "b", 1.9, { allowedTargets: new Set(["c", "d"]) }),
          vm("u2", "b", 1.9, { allowedTargets: new Set(["c", "d"]) }),
        ],
        overloadedSince: new Map([
          ["a", 0],
          ["b", 0],
        ]),
        settings: { ...on, threshold: 0.2 },
      }),
    );
    expect(plan.moves.map((m) => [m.vm, m.to])).toEqual([
      ["u1", "c"],
      ["v1", "d"],
    ]);
  });

  it("leaves out a host a migration touched less than a window ago, as source and as target", () => {
    const plan = planRebalance(
      input({ hosts: [host("a", 3.6, { settling: true }), host("b", 0.2), host("c", 0.4)] }),
    );
    expect(plan.moves).toEqual([]);
    expect(plan.overloadedSince.has("a")).toBe(false);
    expect(plan.hosts.find((h) => h.host === "a")?.note).toMatch(/settling/);
    const toC = planRebalance(
      input({ hosts: [host("a", 3.6), host("b", 0.2, { settling: true }), host("c", 0.4)] }),
    );
    expect(toC.moves.map((m) => m.to)).toEqual(["c"]);
  });

  it("leaves out hosts without figures or not eligible, and needs two hosts with figures", () => {
    const plan = planRebalance(
      input({ hosts: [host("a", 3.6), host("b", null), host("c", 0, { eligible: false })] }),
    );
    expect(plan.idle).toMatch(/fewer than two hosts/);
    expect(plan.hosts.find((h) => h.host === "b")?.note).toMatch(/no CPU figures/);
    expect(plan.hosts.find((h) => h.host === "c")?.note).toMatch(/not eligible/);
  });
});
