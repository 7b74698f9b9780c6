import { describe, expect, it } from "vitest";
import type { HostDrain, HostDrainVm } from "../../api/types/drains.js";
import { runAgainstStub } from "../stub-api.test-util.js";
import { entryLine, reportRows } from "./host-drain.js";

const MIG = "5b0c6a2e-2f7a-4c61-9f57-6f8d6f0f2a11";
const entry = (over: Partial<HostDrainVm>): HostDrainVm => ({
  vm: "web-1",
  vmId: "9e1b7c2a-3d4f-4a5b-8c6d-7e8f9a0b1c2d",
  state: "waiting",
  migrationId: null,
  targetHost: null,
  code: null,
  reason: "",
  attempts: 0,
  lastAttemptAt: null,
  updatedAt: "2026-12-06T23:00:00.000Z",
  ...over,
});
const drain = (over: Partial<HostDrain>): HostDrain => ({
  id: "0d3c1f4e-8b9a-4a57-8c1e-2b6f1d9e7c01",
  hostId: "1d3c1f4e-8b9a-4a57-8c1e-2b6f1d9e7c01",
  host: "h1",
  state: "draining",
  stateReason: "moving 2 VM(s) off h1",
  concurrency: 1,
  cancelRequested: false,
  requestedBy: "admin",
  vms: [entry({}), entry({ vm: "db-1", state: "waiting" })],
  createdAt: "2026-12-06T23:00:00.000Z",
  updatedAt: "2026-12-06T23:00:00.000Z",
  finishedAt: null,
  ...over,
});
const moved = entry({ state: "moved", targetHost: "h2", migrationId: MIG, reason: "moved to h2" });
const failed = entry({
  vm: "db-1",
  state: "failed",
  code: "NOVA_NO_CAPACITY",
  reason: "No host can run VM db-1: it needs 4096 MiB",
});

describe("a drain's report", () => {
  it("says per VM where it went and by which migration, or why it could not move", () => {
    expect(entryLine(entry({ state: "moving", targetHost: "h2", migrationId: MIG }))).toBe(
      `web-1: moving to h2 (migration ${MIG})`,
    );
    expect(entryLine(moved)).toBe(`web-1: moved to h2 (migration ${MIG})`);
    expect(entryLine(failed)).toBe(
      "db-1: failed [NOVA_NO_CAPACITY]: No host can run VM db-1: it needs 4096 MiB",
    );
    expect(reportRows(drain({ vms: [moved, failed] }))).toEqual([
      ["web-1", "moved", "h2", MIG, "moved to h2"],
      ["db-1", "failed", "-", "-", "NOVA_NO_CAPACITY: No host can run VM db-1: it needs 4096 MiB"],
    ]);
  });
});

describe("novacron host drain against a stub API", () => {
  it("--wait --json starts the drain with the concurrency, follows it and prints the final drain", async () => {
    const done = drain({
      state: "drained",
      stateReason: "2 moved; h1 stays cordoned",
      vms: [moved, { ...moved, vm: "db-1" }],
    });
    const run = await runAgainstStub(["host", "drain", "h1", "--wait", "--concurrency", "2", "--json"], {
      "POST /v1/hosts/h1/drain": { status: 202, body: drain({ concurrency: 2 }) },
      "GET /v1/hosts/h1/drain": { body: done },
    });
    expect(run.code).toBe(0);
    expect(run.requests[0]).toMatchObject({
      method: "POST",
      url: "/v1/hosts/h1/drain",
      body: { concurrency: 2 },
    });
    expect(JSON.parse(run.stdout)).toEqual(done);
    expect(run.stderr).toBe("");
  });

  it("exits 1 with the failed VM's code when the drain ends incomplete, after printing the report", async () => {
    const run = await runAgainstStub(["host", "drain", "h1", "--wait"], {
      "POST /v1/hosts/h1/drain": { status: 202, body: drain({}) },
      "GET /v1/hosts/h1/drain": {
        body: drain({ state: "incomplete", stateReason: "1 moved, 1 could not move", vms: [moved, failed] }),
      },
    });
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/^Drain of h1: incomplete \(1 moved, 1 could not move\)\n/);
    expect(run.stdout).toMatch(/db-1 +failed +- +- +NOVA_NO_CAPACITY: No host can run VM db-1/);
    expect(run.stderr).toContain(`web-1: moved to h2 (migration ${MIG})`);
    expect(run.stderr).toMatch(/novacron: The drain of h1 ended incomplete: .* \[NOVA_NO_CAPACITY\]/);
  });

  it("passes on the server's refusal and refuses a concurrency above the cap without asking", async () => {
    const refused = await runAgainstStub(["host", "drain", "last"], {
      "POST /v1/hosts/last/drain": {
        status: 422,
        body: {
          error: {
            code: "NOVA_DRAIN_NO_TARGET",
            message: "Cannot drain host last: it is the last schedulable host",
          },
        },
      },
    });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("[NOVA_DRAIN_NO_TARGET]");
    const capped = await runAgainstStub(["host", "drain", "h1", "--concurrency", "9"], {});
    expect(capped.code).toBe(2);
    expect(capped.requests).toEqual([]);
  });

  it("--cancel sends DELETE", async () => {
    const run = await runAgainstStub(["host", "drain", "h1", "--cancel", "--json"], {
      "DELETE /v1/hosts/h1/drain": { status: 202, body: drain({ cancelRequested: true }) },
    });
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ cancelRequested: true });
  });
});
