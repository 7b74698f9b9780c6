import { describe, expect, it } from "vitest";
import type { FederatedVm } from "../../api/types/federation.js";
import { runAgainstStub } from "../stub-api.test-util.js";
import { FEDERATED_VM_HEADERS, federatedVmRows } from "./vms.js";

function fedVm(over: Partial<FederatedVm> = {}): FederatedVm {
  return {
    id: "9e1b7c2a-3d4f-4a5b-8c6d-7e8f9a0b1c2d",
    name: "web-1",
    cluster: { id: "0d3c1f4e-8b9a-4a57-8c1e-2b6f1d9e7c01", name: "east" },
    state: "running",
    host: "h1",
    vcpus: 2,
    memoryMiB: 512,
    image: "debian",
    version: 3,
    epoch: 1,
    stale: false,
    ...over,
  };
}

describe("vm list --all-clusters rows", () => {
  it("names each VM's cluster and marks the VMs of a stale cluster", () => {
    const rows = federatedVmRows([
      fedVm(),
      fedVm({
        name: "db-1",
        cluster: { id: "5b0c6a2e-2f7a-4c61-9f57-6f8d6f0f2a11", name: "west" },
        stale: true,
      }),
      fedVm({ name: "new-1", state: "pending", host: null }),
    ]);
    expect(FEDERATED_VM_HEADERS).toEqual(["NAME", "CLUSTER", "EPOCH", "STATE", "HOST", "VCPUS", "MEMORY"]);
    expect(rows).toEqual([
      ["web-1", "east", 1, "running", "h1", 2, "512 MiB"],
      ["db-1", "west", 1, "running (stale)", "h1", 2, "512 MiB"],
      ["new-1", "east", 1, "pending", null, 2, "512 MiB"],
    ]);
  });
});

describe("novacron vm list against a stub API", () => {
  it("--all-clusters asks for the federation's VMs and prints the stale marker", async () => {
    const run = await runAgainstStub(["vm", "list", "--all-clusters"], {
      "GET /v1/federation/vms": {
        body: { vms: [fedVm({ stale: true, cluster: { id: fedVm().cluster.id, name: "west" } })] },
      },
    });
    expect(run.code).toBe(0);
    expect(run.requests.map((r) => r.url)).toEqual(["/v1/federation/vms"]);
    const lines = run.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^NAME +CLUSTER +EPOCH +STATE +HOST +VCPUS +MEMORY$/);
    expect(lines[1]).toMatch(/^web-1 +west +1 +running \(stale\) +h1 +2 +512 MiB$/);
  });

  it("--all-clusters --json prints the federation's VMs as one document", async () => {
    const vms = [fedVm()];
    const run = await runAgainstStub(["vm", "list", "--all-clusters", "--json"], {
      "GET /v1/federation/vms": { body: { vms } },
    });
    expect(JSON.parse(run.stdout)).toEqual(vms);
  });

  it("without the flag lists this cluster's VMs as before", async () => {
    const run = await runAgainstStub(["vm", "list", "--json"], {
      "GET /v1/vms": { body: { vms: [] } },
    });
    expect(run.code).toBe(0);
    expect(run.requests.map((r) => r.url)).toEqual(["/v1/vms"]);
    expect(JSON.parse(run.stdout)).toEqual([]);
  });
});
