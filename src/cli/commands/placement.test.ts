import { describe, expect, it } from "vitest";
import type { PlacementExplanation, PlacementGroup, VmDryRun } from "../../api/types/placement.js";
import { runAgainstStub } from "../stub-api.test-util.js";
import { explanationRows, parseLabels, rejectedText } from "./placement.js";

const explanation: PlacementExplanation = {
  vm: "web-1",
  chosen: "h2",
  hosts: [
    {
      host: "h2",
      feasible: true,
      score: 1.2,
      scores: { fill: 0.9, load: 0.5, softAffinity: 0, migrationCost: 0, operator: 0 },
    },
    { host: "h1", feasible: false, rejectedBy: "anti-affinity", reason: "a member of group web runs there" },
    { host: "h3", feasible: false, rejectedBy: "memory", reason: "only 12 MiB free, needs 256" },
  ],
  rejected: { "anti-affinity": 1, memory: 1 },
  policy: { strategy: "spread", memoryOvercommit: 1, vcpuOvercommit: 4 },
};
const group: PlacementGroup = {
  id: "0d3c1f4e-8b9a-4a57-8c1e-2b6f1d9e7c01",
  name: "web",
  policy: "anti-affinity",
  scope: "host",
  enforcement: "hard",
  members: ["web-1", "web-2"],
  generation: 1,
  createdAt: "2026-12-07T03:00:00.000Z",
  updatedAt: "2026-12-07T03:00:00.000Z",
};

describe("placement output", () => {
  it("lists every host's verdict, the chosen one marked, and sums up the rejections", () => {
    expect(explanationRows(explanation)).toEqual([
      ["h2 *", "ok", 1.2, "fill=0.9 load=0.5 softAffinity=0 migrationCost=0 operator=0"],
      ["h1", "rejected: anti-affinity", "-", "a member of group web runs there"],
      ["h3", "rejected: memory", "-", "only 12 MiB free, needs 256"],
    ]);
    expect(rejectedText(explanation)).toBe("anti-affinity: 1 host, memory: 1 host");
  });

  it("reads labels as key=value and names one that is not", () => {
    expect(parseLabels(["disk=ssd", "zone=a=b"], "--host-label")).toEqual({ disk: "ssd", zone: "a=b" });
    expect(() => parseLabels(["disk"], "--host-label")).toThrow(/--host-label "disk" is not a label/);
  });
});

describe("placement commands", () => {
  it("vm create --dry-run asks for a dry run with the constraints and prints each host's verdict", async () => {
    const dry: VmDryRun = { dryRun: true, vm: "web-1", host: "h2", explanation };
    const run = await runAgainstStub(
      [
        "vm",
        "create",
        "web-1",
        "--image",
        "guest",
        "--host-label",
        "disk=ssd",
        "--site",
        "east",
        "--group",
        "web",
        "--dry-run",
      ],
      { "POST /v1/vms?dryRun=true": { body: dry } },
    );
    expect(run.code).toBe(0);
    expect(run.requests[0]!.body).toMatchObject({
      name: "web-1",
      hostSelector: { disk: "ssd" },
      site: "east",
      groups: ["web"],
    });
    expect(run.stdout).toMatch(
      /^Dry run, nothing created: VM web-1 would be placed on: h2 \(strategy spread/,
    );
    expect(run.stdout).toMatch(/h1 +rejected: anti-affinity +- +a member of group web runs there/);
    const json = await runAgainstStub(["vm", "create", "web-1", "--image", "guest", "--dry-run", "--json"], {
      "POST /v1/vms?dryRun=true": { body: dry },
    });
    expect(JSON.parse(json.stdout)).toEqual(dry);
  });

  it("creates a group, explains a VM, labels a host, and passes on a refusal with its code", async () => {
    const made = await runAgainstStub(
      [
        "placement",
        "group",
        "create",
        "web",
        "--policy",
        "anti-affinity",
        "--vm",
        "web-1",
        "--vm",
        "web-2",
        "--json",
      ],
      { "POST /v1/placement-groups": { status: 201, body: group } },
    );
    expect(made.code).toBe(0);
    expect(made.requests[0]!.body).toEqual({
      name: "web",
      policy: "anti-affinity",
      scope: "host",
      enforcement: "hard",
      members: ["web-1", "web-2"],
    });
    expect(JSON.parse(made.stdout)).toEqual(group);

    const bad = await runAgainstStub(["placement", "group", "create", "web", "--policy", "near"], {});
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('--policy "near": use affinity or anti-affinity');
    expect(bad.requests).toEqual([]);

    const conflict = await runAgainstStub(
      ["placement", "group", "create", "db", "--policy", "affinity", "--vm", "web-1", "--vm", "web-2"],
      {
        "POST /v1/placement-groups": {
          status: 422,
          body: {
            error: {
              code: "NOVA_PLACEMENT_CONFLICT",
              message: "Placement groups db and web both hold web-1, web-2",
            },
          },
        },
      },
    );
    expect(conflict.code).toBe(1);
    expect(conflict.stderr).toContain("[NOVA_PLACEMENT_CONFLICT]");

    const explained = await runAgainstStub(["placement", "explain", "web-1"], {
      "GET /v1/vms/web-1/placement": { body: explanation },
    });
    expect(explained.stdout).toMatch(/^VM web-1 would move to: h2/);

    const labelled = await runAgainstStub(["host", "label", "h1", "disk=ssd", "--remove", "zone"], {
      "POST /v1/hosts/h1/labels": { body: { name: "h1", labels: { disk: "ssd" } } },
    });
    expect(labelled.requests[0]!.body).toEqual({ set: { disk: "ssd" }, remove: ["zone"] });
    expect(labelled.stdout).toBe("Host h1 labels: disk=ssd\n");
  });
});
