// The rebalancer end to end, with a real server, two real agents and TCG guests: the
// agents report the CPU their QEMUs use, the server keeps the samples, and once turned on
// the rebalancer moves one of the two busy VMs off the overloaded host by live migration —
// exactly one move, the guest intact, and no move back in the passes that follow. Off (the
// default) it moves nothing and says how to turn it on; bad settings are refused.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Migration } from "../src/api/types/migrations.js";
import type { RebalancerPlan, RebalancerSettings } from "../src/api/types/rebalancer.js";
import { waitFor } from "../src/lib/wait.js";
import { guestImageManifest, qemuPidsUnder, TestCluster } from "./helpers/cluster.js";
import { fetchEvents } from "./helpers/events.js";

const SERVER_PORT = 18760;
const AGENTS = { r1: 18761, r2: 18762 } as const;
const AGENT_FLAGS = ["--memory", "2048", "--vcpus", "2", "--stop-grace", "20"];
// A guest that keeps a CPU busy dirtying memory (TCG turns that into QEMU CPU time) and
// checks a memory pattern.
const WORKLOAD =
  "nc.dirty_mb=16 nc.dirty_rate_mbps=40 nc.pattern_seed=12 nc.pattern_mem_mb=8 nc.pattern_disk_mb=8 nc.verify_every=2";

interface VmBody {
  id: string;
  name: string;
  state: string;
  host: string | null;
}

describe("the rebalancer", { timeout: 600_000 }, () => {
  let c: TestCluster;

  beforeAll(async () => {
    const manifest = await guestImageManifest();
    c = await TestCluster.create(SERVER_PORT);
    await c.startServer([
      "--heartbeat-timeout",
      "6",
      "--rebalance-interval",
      "1",
      "--load-sample-interval",
      "1",
    ]);
    for (const [name, port] of Object.entries(AGENTS)) await c.startAgent(name, port, AGENT_FLAGS);
    const res = await c.cli(["image", "import", "guest", "--manifest", manifest, "--host", "r1"]);
    expect(res.code, res.stderr).toBe(0);
    for (const name of ["rb1", "rb2"]) {
      const r = await c.api("POST", "/v1/vms", {
        name,
        image: "guest",
        memoryMiB: 256,
        kernelArgs: WORKLOAD,
      });
      expect(r.status, JSON.stringify(r.body)).toBe(201);
    }
    for (const name of ["rb1", "rb2"]) {
      expect(await c.waitVmState(name, "running")).toMatchObject({ host: "r1" });
      await c.waitConsole(name, /NC-VERIFY PASS seed=12 .*round=1/);
    }
  }, 300_000);

  afterAll(async () => {
    await c?.destroy();
  });

  const plan = async () => {
    const r = await c.api<RebalancerPlan>("GET", "/v1/rebalancer/plan");
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    return r.body;
  };
  const migrations = async () =>
    (await c.api<{ migrations: Migration[] }>("GET", "/v1/migrations")).body.migrations;

  it("is off by default: it reads the load, names the overloaded host and moves nothing", async () => {
    const show = await c.cli(["rebalancer", "show", "--json"]);
    expect(show.code, show.stderr).toBe(0);
    expect(JSON.parse(show.stdout) as RebalancerSettings).toMatchObject({ enabled: false, holdMs: 300_000 });
    // The agents' CPU figures reach the plan: r1 runs both busy guests, r2 none.
    const seen = await waitFor(
      async () => {
        const p = await plan();
        const u = Object.fromEntries(p.hosts.map((h) => [h.host, h.utilization]));
        return (u.r1 ?? 0) > 0.05 && u.r2 !== null && u.r2 !== undefined && u.r1! > u.r2! ? p : undefined;
      },
      { timeoutMs: 60_000, what: "CPU figures from both agents, r1 busier" },
    );
    expect(seen.enabled).toBe(false);
    expect(seen.idle).toMatch(/rebalancer set --enable/);
    expect(seen.moves).toEqual([]);
    const table = await c.cli(["rebalancer", "plan"]);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/^off; mean utilization \d+%/);
    expect(table.stdout).toMatch(/\nr1\s+\d+%/);
    expect(await migrations()).toEqual([]);
  });

  it("refuses bad settings, changing nothing", async () => {
    const before = (await c.api<RebalancerSettings>("GET", "/v1/rebalancer")).body;
    const bad = await c.api<{ error: { code: string; message: string } }>("PATCH", "/v1/rebalancer", {
      threshold: 3,
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toMatch(/threshold/);
    const unknown = await c.api("PATCH", "/v1/rebalancer", { agressive: true });
    expect(unknown.status).toBe(400);
    const cli = await c.cli(["rebalancer", "set", "--hold", "soon"]);
    expect(cli.code).not.toBe(0);
    expect(cli.stderr).toMatch(/--hold soon is not a duration: give e\.g\. 90s, 5m or 1h/);
    const nothing = await c.cli(["rebalancer", "set"]);
    expect(nothing.code).not.toBe(0);
    expect(nothing.stderr).toMatch(/Nothing to change/);
    expect((await c.api<RebalancerSettings>("GET", "/v1/rebalancer")).body).toEqual(before);
  });

  it("once on, moves one busy VM off the overloaded host, intact, and never back", async () => {
    const set = await c.cli([
      "rebalancer",
      "set",
      "--enable",
      "--threshold",
      "10%",
      "--min-utilization",
      "2%",
      "--margin",
      "10%",
      "--hold",
      "3s",
      "--window",
      "5s",
      "--json",
    ]);
    expect(set.code, set.stderr).toBe(0);
    expect(JSON.parse(set.stdout) as RebalancerSettings).toMatchObject({
      enabled: true,
      threshold: 0.1,
      holdMs: 3000,
      windowMs: 5000,
      updatedBy: expect.any(String),
    });

    const [moved] = await waitFor(
      async () => {
        const ms = await migrations();
        return ms.length > 0 ? ms : undefined;
      },
      { timeoutMs: 120_000, what: "the rebalancer to start a migration" },
    );
    expect(moved).toMatchObject({ sourceHost: "r1", targetHost: "r2" });
    const done = await waitFor(
      async () => {
        const m = (await c.api<Migration>("GET", `/v1/migrations/${moved!.id}`)).body;
        return m.state === "completed" || m.state === "failed" || m.state === "cancelled" ? m : undefined;
      },
      { timeoutMs: 300_000, what: "the rebalancer's migration to end" },
    );
    expect(done.state, done.stateReason).toBe("completed");

    // The event says why.
    const ev = (await fetchEvents(c, 0)).find((e) => e.type === "rebalancer.move");
    expect(ev?.data).toMatchObject({ vm: moved!.vm, from: "r1", to: "r2", migration: moved!.id });
    expect(Number(ev?.data.gain)).toBeGreaterThanOrEqual(0.1);

    const vm = (await c.waitVmState(moved!.vm, "running")) as unknown as VmBody;
    expect(vm.host).toBe("r2");
    expect(await qemuPidsUnder(`${c.agentDir("r1")}/vms/${vm.id}`)).toHaveLength(0);
    expect(await qemuPidsUnder(`${c.agentDir("r2")}/vms/${vm.id}`)).toHaveLength(1);
    const lines = await c.console(moved!.vm, 400);
    expect(lines.filter((l) => l.includes("NC-VERIFY FAIL"))).toEqual([]);

    // Ten more passes with both hosts reporting: nothing else moves.
    const after = (await plan()).passes;
    await waitFor(async () => (await plan()).passes >= after + 10, {
      timeoutMs: 60_000,
      what: "ten more rebalancer passes",
    });
    expect((await migrations()).map((m) => m.id)).toEqual([moved!.id]);
    const other = moved!.vm === "rb1" ? "rb2" : "rb1";
    expect(await c.vm(other)).toMatchObject({ host: "r1", state: "running" });
  });
});
