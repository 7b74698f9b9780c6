import { describe, expect, it } from "vitest";
import { isNovaError, type NovaError } from "../lib/errors.js";
import { QEMU_10_0_2 } from "../lib/qemu-info.test-util.js";
import type { ItpHost } from "../placement/itp/model.js";
import { PlacementState } from "../placement/itp/state.js";
import {
  ClusterPlacement,
  itpHostOf,
  type PlacementRequest,
  PlacementView,
  placementPolicy,
} from "./placement.js";
import type { HostRecord } from "./store/hosts.js";

const host = (name: string, freeMiB: number): HostRecord => ({
  id: `id-${name}`,
  name,
  agentUrl: "http://127.0.0.1:1",
  liveness: "alive",
  cordoned: false,
  drain: null,
  accel: "tcg",
  accelReason: "test",
  vcpus: 2,
  memoryMiB: 4096,
  allocatedMemoryMiB: 4096 - freeMiB,
  freeMemoryMiB: freeMiB,
  allocatedVcpus: 0,
  vmCount: 0,
  diskTotalBytes: 1e10,
  diskFreeBytes: 5e9,
  agentVersion: "0",
  qemu: QEMU_10_0_2,
  site: null,
  labels: {},
  placementWeight: 0,
  certificate: null,
  registeredAt: "",
  lastHeartbeatAt: "",
});

/** A view over `hosts` with an anti-affinity pair: `b` runs on the first host. */
function view(hosts: HostRecord[]): PlacementView {
  const itp: ItpHost[] = hosts.map((h) => itpHostOf(h, null));
  const groups = [
    {
      name: "pair",
      policy: "anti-affinity",
      scope: "host",
      enforcement: "hard",
      members: ["a", "b"],
    } as const,
  ];
  const state = new PlacementState(itp, groups, new Map([["b", hosts[0]!.id]]));
  return new PlacementView(new ClusterPlacement(), hosts, state, () => {});
}

const req: PlacementRequest = { name: "a", memoryMiB: 256, vcpus: 1, imageName: "guest", imageHostIds: null };

function refusal(f: () => unknown): NovaError {
  try {
    f();
  } catch (err) {
    if (isNovaError(err)) return err;
    throw err;
  }
  throw new Error("expected a refusal");
}

describe("the server's placement", () => {
  it("takes the operator's policy and names a setting that is not valid", () => {
    expect(placementPolicy({})).toMatchObject({ strategy: "spread", memoryOvercommit: 1, vcpuOvercommit: 4 });
    expect(placementPolicy({ strategy: "binpack", memoryOvercommit: 1.5 })).toMatchObject({
      strategy: "binpack",
      memoryOvercommit: 1.5,
    });
    const bad = refusal(() => placementPolicy({ strategy: "random" }));
    expect(bad.code).toBe("NOVA_CONFIG");
    expect(bad.message).toBe('--placement-strategy "random" is not a strategy: use spread or binpack.');
  });

  it("keeps a retried move off the host it failed on when another fits, else takes it there", () => {
    // h2 has the most room, h3 less: spread picks h2, avoiding h2 gives h3.
    const v = view([host("h1", 4096), host("h2", 4000), host("h3", 2000)]);
    expect(v.place(req).name).toBe("h2");
    expect(v.placeAvoiding(req, ["h2"]).name).toBe("h3");
    // Only h2 can take it (h1 holds b, h3 is full): avoiding it is a preference, not a rule.
    const only = view([host("h1", 4096), host("h2", 4000), host("h3", 100)]);
    expect(only.placeAvoiding(req, ["h2"]).name).toBe("h2");
    // The avoided host is a candidate again afterwards.
    expect(only.place(req).name).toBe("h2");
  });

  it("checks a named target with every check and names the one it fails", () => {
    const v = view([host("h1", 4096), host("h2", 4000)]);
    expect(v.placeOn(req, "id-h2").name).toBe("h2");
    const e = refusal(() => v.placeOn(req, "id-h1"));
    expect(e.code).toBe("NOVA_NO_CAPACITY");
    expect(e.message).toMatch(/^Host h1 cannot run VM a \(256 MiB, 1 vCPUs\): anti-affinity: /);
    expect(e.details).toMatchObject({
      host: "h1",
      rejectedBy: "anti-affinity",
      rejected: { "anti-affinity": 1 },
    });
  });

  it("moves a VM live only to a host of its accelerator's CPU model; an HA restart boots it anywhere", () => {
    const kvm = { ...host("k1", 4000), accel: "kvm" as const };
    const hosts = [host("h1", 4096), host("h2", 1000), kvm];
    const live = { ...req, fromHostId: "id-h1", live: true };
    // Spread would pick k1 (most room); the VM runs with max under TCG on h1.
    expect(view(hosts).place(live).name).toBe("h2");
    const e = refusal(() => view(hosts).placeOn(live, "id-k1"));
    expect(e.code).toBe("NOVA_NO_CAPACITY");
    expect(e.message).toContain(
      "Host k1 cannot run VM a (256 MiB, 1 vCPUs): cpu-model: starts VMs with CPU model host, the VM runs with max",
    );
    expect(e.details).toMatchObject({ rejectedBy: "cpu-model" });
    // Not live (an HA restart from a dead host): k1 is fine.
    expect(view(hosts).place({ ...req, fromHostId: "id-h1" }).name).toBe("k1");
  });
});
