// Maintenance drain with a real server, three real agents and TCG guests: a host with two
// running VMs and a stopped one is drained — both running VMs run elsewhere with their
// guests intact (no reboot, memory and disk patterns still verifying), the stopped one is
// reported as left, the host stays cordoned; a drain of the last schedulable host, or one
// that would have to put an anti-affine pair together, is refused and changes nothing; the
// drain keeps the pair apart although the server bin-packs; and a drain resumes after the
// server is killed mid-move (a move the restart rolled back is retried).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { HostDrain } from "../src/api/types/drains.js";
import type { Host } from "../src/api/types/hosts.js";
import { waitFor } from "../src/lib/wait.js";
import { guestImageManifest, qemuPidsUnder, TestCluster } from "./helpers/cluster.js";

const SERVER_PORT = 18600;
const AGENTS = { d1: 18601, d2: 18602, d3: 18603 } as const;
type AgentName = keyof typeof AGENTS;
const AGENT_FLAGS = ["--memory", "2048", "--stop-grace", "20"];
// Bin-packing would put both of d1's VMs on one host: only their anti-affinity group keeps them apart.
const SERVER_FLAGS = ["--heartbeat-timeout", "6", "--placement-strategy", "binpack"];
// A guest that keeps checking a memory and a disk pattern (NC-VERIFY) and says NC-READY at boot.
const WORKLOAD = "nc.pattern_seed=11 nc.pattern_mem_mb=8 nc.pattern_disk_mb=8 nc.verify_every=2";

interface VmBody {
  id: string;
  name: string;
  state: string;
  host: string | null;
}

describe("draining a host", { timeout: 600_000 }, () => {
  let c: TestCluster;

  beforeAll(async () => {
    const manifest = await guestImageManifest();
    c = await TestCluster.create(SERVER_PORT);
    await c.startServer(SERVER_FLAGS);
    for (const [name, port] of Object.entries(AGENTS)) await c.startAgent(name, port, AGENT_FLAGS);
    // The image only on d1, so every VM is placed there; a drain's migrations copy it.
    const res = await c.cli(["image", "import", "guest", "--manifest", manifest, "--host", "d1"]);
    expect(res.code, res.stderr).toBe(0);
    await createVm("dr1");
    await createVm("dr2");
    await createVm("drs", false);
    const group = await c.cli([
      "placement",
      "group",
      "create",
      "dr-pair",
      "--policy",
      "anti-affinity",
      "--vm",
      "dr1",
      "--vm",
      "dr2",
    ]);
    expect(group.code, group.stderr).toBe(0);
  }, 300_000);

  afterAll(async () => {
    await c?.destroy();
  });

  async function createVm(name: string, start = true): Promise<VmBody> {
    const res = await c.api<VmBody>("POST", "/v1/vms", {
      name,
      image: "guest",
      memoryMiB: 256,
      kernelArgs: WORKLOAD,
      start,
    });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    if (!start) return (await c.waitVmState(name, "stopped")) as unknown as VmBody;
    await c.waitVmState(name, "running");
    await c.waitConsole(name, /NC-VERIFY PASS seed=11 .*round=1/);
    return (await c.vm(name)) as unknown as VmBody;
  }

  const host = async (name: AgentName) => (await c.api<Host>("GET", `/v1/hosts/${name}`)).body;
  const vm = async (name: string) => (await c.vm(name)) as unknown as VmBody;
  const drainOf = (name: AgentName) => c.api<HostDrain>("GET", `/v1/hosts/${name}/drain`);

  /** QEMUs of this VM across all agents: exactly one, on `where`. */
  async function expectRunningOnceOn(name: string, where: string): Promise<void> {
    const v = (await c.waitVmState(name, "running", 60_000)) as unknown as VmBody;
    expect(v.host).toBe(where);
    await waitFor(
      async () => {
        let n = 0;
        for (const a of Object.keys(AGENTS))
          n += (await qemuPidsUnder(`${c.agentDir(a)}/vms/${v.id}`)).length;
        return n === 1;
      },
      { timeoutMs: 30_000, what: `exactly one QEMU for ${name}` },
    );
    expect(await qemuPidsUnder(`${c.agentDir(where)}/vms/${v.id}`)).toHaveLength(1);
  }

  /** The guest verified its patterns again after `before` (a console tail) and did not reboot since. */
  async function expectGuestIntactSince(name: string, before: string[]): Promise<void> {
    const rounds = (lines: string[]) =>
      lines.map((l) => Number(/NC-VERIFY PASS seed=11 .*round=(\d+)/.exec(l)?.[1] ?? 0));
    const lastRound = Math.max(0, ...rounds(before));
    await waitFor(async () => Math.max(0, ...rounds(await c.console(name, 400))) > lastRound, {
      timeoutMs: 90_000,
      what: `${name} to verify its patterns again`,
    });
    const lines = await c.console(name, 400);
    const since = lines.slice(lines.lastIndexOf(before.at(-1) ?? "") + 1);
    expect(since.filter((l) => l.startsWith("NC-READY"))).toEqual([]);
    expect(lines.filter((l) => l.includes("NC-VERIFY FAIL"))).toEqual([]);
  }

  it("refuses to drain the last schedulable host, changing nothing", async () => {
    for (const h of ["d2", "d3"])
      expect((await c.api("POST", `/v1/hosts/${h}/cordon`, { cordoned: true })).status).toBe(200);
    try {
      const res = await c.api<{ error: { code: string; message: string } }>("POST", "/v1/hosts/d1/drain", {});
      expect(res.status).toBe(422);
      expect(res.body.error.code).toBe("NOVA_DRAIN_NO_TARGET");
      expect(res.body.error.message).toMatch(
        /d1: it is the last schedulable host \(the others: d2 \(cordoned\), d3 \(cordoned\)\)/,
      );
      const cli = await c.cli(["host", "drain", "d1"]);
      expect(cli.code).toBe(1);
      expect(cli.stderr).toContain("[NOVA_DRAIN_NO_TARGET]");
      const d1 = await host("d1");
      expect(d1.cordoned).toBe(false);
      expect(d1.drain).toBeNull();
      expect((await drainOf("d1")).status).toBe(404);
      for (const name of ["dr1", "dr2"])
        expect(await vm(name)).toMatchObject({ state: "running", host: "d1" });
    } finally {
      for (const h of ["d2", "d3"]) await c.api("POST", `/v1/hosts/${h}/uncordon`);
    }
  });

  it("refuses a drain that would have to put an anti-affine pair on one host, changing nothing", async () => {
    expect((await c.api("POST", "/v1/hosts/d3/cordon", { cordoned: true })).status).toBe(200);
    try {
      const res = await c.api<{ error: { code: string; message: string } }>("POST", "/v1/hosts/d1/drain", {});
      expect(res.status).toBe(422);
      expect(res.body.error.code).toBe("NOVA_DRAIN_NO_TARGET");
      expect(res.body.error.message).toMatch(/cannot take VM dr2 .*anti-affinity: 1 host/);
      expect((await host("d1")).cordoned).toBe(false);
      expect((await drainOf("d1")).status).toBe(404);
    } finally {
      await c.api("POST", "/v1/hosts/d3/uncordon");
    }
  });

  it("moves both running VMs off with their guests intact and apart, reports the stopped one and leaves the host cordoned", async () => {
    const before = { dr1: await c.console("dr1", 400), dr2: await c.console("dr2", 400) };
    const run = await c.cli(["host", "drain", "d1", "--wait", "--timeout", "500", "--json"], 520_000);
    expect(run.code, run.stderr).toBe(0);
    const d = JSON.parse(run.stdout) as HostDrain;
    expect(d.state).toBe("drained");
    const byVm = Object.fromEntries(d.vms.map((e) => [e.vm, e]));
    for (const name of ["dr1", "dr2"] as const) {
      const e = byVm[name]!;
      expect(e.state, JSON.stringify(e)).toBe("moved");
      expect(["d2", "d3"]).toContain(e.targetHost);
      expect(e.migrationId).toMatch(/^[0-9a-f-]{36}$/);
      const m = (await c.api<{ state: string; targetHost: string }>("GET", `/v1/migrations/${e.migrationId}`))
        .body;
      expect(m).toMatchObject({ state: "completed", targetHost: e.targetHost });
      await expectRunningOnceOn(name, e.targetHost!);
      await expectGuestIntactSince(name, before[name]);
    }
    // The anti-affinity group kept them apart, although bin-packing would have stacked them.
    expect(byVm.dr1?.targetHost).not.toBe(byVm.dr2?.targetHost);
    expect(byVm.drs).toMatchObject({ state: "left" });
    expect(byVm.drs?.reason).toMatch(/^not running \(stopped\): left on d1/);
    expect(await vm("drs")).toMatchObject({ state: "stopped", host: "d1" });
    const d1 = await host("d1");
    expect(d1.cordoned).toBe(true);
    expect(d1.drain).toEqual({ id: d.id, state: "drained", cancelRequested: false });
    // The list shows it too, and the report is there afterwards.
    const list = await c.cli(["host", "list"]);
    expect(list.stdout).toMatch(/d1 +alive +yes +last drained/);
    expect((await drainOf("d1")).body.id).toBe(d.id);
  });

  it("resumes a drain after the server is killed in the middle of a move", async () => {
    // d2's VMs go to d3, where dr2 runs: the pair's group would (rightly) refuse this drain.
    const gone = await c.cli(["placement", "group", "delete", "dr-pair"]);
    expect(gone.code, gone.stderr).toBe(0);
    // Two VMs on d2: place a third there while d3 is cordoned (d1 stays cordoned from the drain).
    const onD2 = async () =>
      (await c.api<{ vms: VmBody[] }>("GET", "/v1/vms")).body.vms.filter(
        (v) => v.host === "d2" && v.state === "running",
      );
    await c.api("POST", "/v1/hosts/d3/cordon", { cordoned: true });
    try {
      while ((await onD2()).length < 2) await createVm(`dr${3 + (await onD2()).length}`);
    } finally {
      await c.api("POST", "/v1/hosts/d3/uncordon");
    }
    const names = (await onD2()).map((v) => v.name);
    expect(names).toHaveLength(2);
    const started = await c.api<HostDrain>("POST", "/v1/hosts/d2/drain", { concurrency: 1 });
    expect(started.status, JSON.stringify(started.body)).toBe(202);
    const first = await waitFor(
      async () => (await drainOf("d2")).body.vms.find((e) => e.state === "moving"),
      { timeoutMs: 60_000, intervalMs: 100, what: "the drain's first move to start" },
    );
    await c.stop("server", "SIGKILL");
    await c.startServer(SERVER_FLAGS);
    const end = await waitFor(
      async () => {
        const d = (await drainOf("d2")).body;
        return d.state === "draining" ? undefined : d;
      },
      { timeoutMs: 400_000, intervalMs: 500, what: "the drain of d2 to end after the restart" },
    );
    const second = end.vms.find((e) => e.vm !== first.vm)!;
    // The second move started only after the restart: the resumed executor started it.
    expect(second).toMatchObject({ state: "moved", targetHost: "d3" });
    await expectRunningOnceOn(second.vm, "d3");
    // The first either finished on d3, or was rolled back by the restart and moved by a retry.
    const firstEnd = end.vms.find((e) => e.vm === first.vm)!;
    console.info(
      `server killed during ${first.vm}'s move: ${firstEnd.state} after ${firstEnd.attempts} attempt(s) (${firstEnd.reason}); drain ${end.state}`,
    );
    expect(firstEnd).toMatchObject({ state: "moved", targetHost: "d3" });
    expect(end.state).toBe("drained");
    await expectRunningOnceOn(first.vm, "d3");
    expect((await host("d2")).cordoned).toBe(true);
  });
});
