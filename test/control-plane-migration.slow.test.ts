// The fault test of control-plane failover (issue 17, item 5): two server replicas on one
// PostgreSQL, two real agents with TCG guests that know both replicas. `kill -9` of the
// leader in the middle of a live migration: the other replica takes over and the migration
// completes or rolls back — never both — with exactly one QEMU of the VM afterwards, running
// where the migration's end says. And an execution whose worker died with the leader
// resumes on a replica that is left, from its durable state.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ControlPlane } from "../src/api/types/control-plane.js";
import { waitFor } from "../src/lib/wait.js";
import { guestImageManifest, qemuPidsUnder, TestCluster } from "./helpers/cluster.js";
import { createPostgresDatabase, type TestDatabase } from "./helpers/databases.js";

const PORTS = { a: 18746, b: 18747, m1: 18748, m2: 18749 };
const url = (port: number) => `https://127.0.0.1:${port}`;
const AGENT_FLAGS = ["--memory", "2048", "--stop-grace", "20"];
const WORKLOAD =
  "nc.pattern_seed=11 nc.pattern_mem_mb=8 nc.pattern_disk_mb=8 nc.verify_every=2 nc.dirty_mb=32 nc.dirty_rate_mbps=4";

interface MigrationBody {
  id: string;
  state: string;
  stateReason: string;
  rollback: string;
  sourceHost: string;
  targetHost: string;
}
interface VmBody {
  id: string;
  state: string;
  host: string;
}
interface Exec {
  id: string;
  state: string;
  steps: { state: string; attempts: number }[];
}

describe("control-plane failover under load", { timeout: 300_000 }, () => {
  let db: TestDatabase;
  let c: TestCluster;
  const flags = (...extra: string[]) => ["--database-url", db.url!, "--heartbeat-timeout", "8", ...extra];
  const both = `${url(PORTS.a)},${url(PORTS.b)}`;

  beforeAll(async () => {
    process.env.NOVACRON_LOG_LEVEL = "info";
    const manifest = await guestImageManifest();
    db = await createPostgresDatabase();
    c = await TestCluster.create(PORTS.a);
    await c.startServer(flags());
    await c.startReplica("server-b", PORTS.b, flags());
    await c.startAgent("m1", PORTS.m1, AGENT_FLAGS, { serverUrl: both });
    await c.startAgent("m2", PORTS.m2, AGENT_FLAGS, { serverUrl: both });
    const res = await c.cli(["image", "import", "guest", "--manifest", manifest, "--host", "m1"]);
    expect(res.code, res.stderr).toBe(0);
  }, 240_000);

  afterAll(async () => {
    await c?.destroy();
    await db?.drop();
  });

  async function qemuCount(vmId: string): Promise<{ m1: number; m2: number }> {
    return {
      m1: (await qemuPidsUnder(`${c.dir}/agents/m1/vms/${vmId}`)).length,
      m2: (await qemuPidsUnder(`${c.dir}/agents/m2/vms/${vmId}`)).length,
    };
  }

  async function leader(): Promise<ControlPlane["leader"]> {
    return (await c.api<ControlPlane>("GET", "/v1/control-plane")).body.leader;
  }

  it("kill -9 of the leader mid-migration: the migration completes or rolls back, never both, and the VM runs once", async () => {
    expect((await leader())?.apiUrl).toBe(url(PORTS.a));
    const created = await c.api<VmBody>("POST", "/v1/vms", {
      name: "fo1",
      image: "guest",
      memoryMiB: 256,
      kernelArgs: WORKLOAD,
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    await c.waitVmState("fo1", "running");
    await c.waitConsole("fo1", /NC-VERIFY PASS seed=11 .*round=1/);
    const vm = (await c.vm("fo1")) as unknown as VmBody;
    expect(vm.host).toBe("m1");

    // Slow enough that the leader dies while the memory is on the wire.
    const m = (
      await c.api<MigrationBody>("POST", "/v1/vms/fo1/migrations", { options: { maxBandwidthMiBps: 4 } })
    ).body;
    await waitFor(
      async () => (await c.api<MigrationBody>("GET", `/v1/migrations/${m.id}`)).body.state === "transferring",
      { timeoutMs: 120_000, what: "the transfer to start" },
    );
    await c.stop("server", "SIGKILL");
    c.pointAt(url(PORTS.b));
    await waitFor(async () => (await leader())?.apiUrl === url(PORTS.b), {
      timeoutMs: 20_000,
      intervalMs: 200,
      what: "server-b to lead",
    });

    const end = await c.waitMigrationEnd<MigrationBody>(m.id, 240_000);
    console.log(
      `leader killed mid-migration: migration ${end.state} (${end.stateReason}); rollback: ${end.rollback || "-"}`,
    );
    expect(["completed", "failed"]).toContain(end.state);
    if (end.state === "failed") expect(end.stateReason).toContain("another replica took over");
    const expectedHost = end.state === "completed" ? end.targetHost : end.sourceHost;
    const otherHost = expectedHost === "m1" ? "m2" : "m1";
    const running = (await c.waitVmState("fo1", "running", 60_000)) as unknown as VmBody;
    expect(running.host).toBe(expectedHost);
    // Exactly one QEMU, on the host the migration's end names; none on the other.
    await waitFor(
      async () => {
        const n = await qemuCount(vm.id);
        return n[expectedHost as "m1" | "m2"] === 1 && n[otherHost as "m1" | "m2"] === 0;
      },
      { timeoutMs: 60_000, what: `exactly one QEMU of fo1, on ${expectedHost}` },
    );
    // The guest still counts on: it did not reboot and its pattern verifies.
    const before = await c.console("fo1", 400);
    const rounds = (lines: string[]) =>
      Math.max(0, ...lines.map((l) => Number(/NC-VERIFY PASS seed=11 .*round=(\d+)/.exec(l)?.[1] ?? 0)));
    await waitFor(async () => rounds(await c.console("fo1", 400)) > rounds(before), {
      timeoutMs: 60_000,
      what: "fo1 to verify its pattern again",
    });
    const lines = await c.console("fo1", 400);
    expect(lines.filter((l) => l.includes("NC-VERIFY FAIL"))).toEqual([]);
    // The new leader's controllers carry on: one more VM change goes through them.
    expect((await c.api("POST", "/v1/vms/fo1/stop")).status).toBeLessThan(300);
    await c.waitVmState("fo1", "stopped", 90_000);
    await waitFor(async () => (await qemuCount(vm.id)).m1 + (await qemuCount(vm.id)).m2 === 0, {
      timeoutMs: 30_000,
      what: "fo1's QEMU to exit",
    });
  });

  it("resumes an execution whose worker died with the leader, on a replica that is left", async () => {
    // The killed server comes back as an API-only follower: the execution can only start on
    // server-b, the leader, which is killed next.
    await c.startServer(flags("--no-exec-workers"));
    c.pointAt(url(PORTS.b));
    const submitted = await c.api<Exec>("POST", "/v1/executions", {
      plan: {
        name: "failover",
        sla: "fast",
        steps: [
          { kind: "wait", seconds: 4 },
          { kind: "wait", seconds: 1 },
        ],
      },
    });
    expect(submitted.status).toBe(202);
    await waitFor(
      async () =>
        (await c.api<Exec>("GET", `/v1/executions/${submitted.body.id}`)).body.steps[0]?.state === "running",
      { timeoutMs: 20_000, what: "the first step to run on server-b" },
    );
    await c.stop("server-b", "SIGKILL");
    c.pointAt(url(PORTS.a));
    await waitFor(async () => (await leader())?.apiUrl === url(PORTS.a), {
      timeoutMs: 20_000,
      intervalMs: 200,
      what: "the first server to lead again",
    });
    // A replica with workers joins (server-b restarted); the dead worker's lease runs out.
    await c.startReplica("server-b", PORTS.b, flags());
    const done = await waitFor(
      async () => {
        const e = (await c.api<Exec>("GET", `/v1/executions/${submitted.body.id}`)).body;
        return e.state === "completed" || e.state === "failed" ? e : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 250, what: "the execution to finish" },
    );
    expect(done.state).toBe("completed");
    expect(done.steps[0]!.attempts).toBe(2);
    expect(done.steps[1]!.attempts).toBe(1);
  });

  it("a leader dying right after it recorded switching-over: the next leader finishes or rolls back, never both", async () => {
    // Both replicas again, each with the failpoint: the leader (server-b, once the first
    // server restarts) SIGKILLs itself right after it committed `switching-over`, the
    // moment a kill from outside cannot hit. The next leader re-runs switching-over
    // without recording it again, so it does not hit the failpoint itself.
    const failpoint = { NOVACRON_FAILPOINTS: "migration.switching-over=kill" };
    await c.stop("server-b");
    await c.startReplica("server-b", PORTS.b, flags(), { env: failpoint });
    await c.stop("server");
    c.pointAt(url(PORTS.b));
    await waitFor(async () => (await leader())?.apiUrl === url(PORTS.b), {
      timeoutMs: 20_000,
      what: "server-b to lead",
    });
    await c.startServer(flags(), { env: failpoint });
    c.pointAt(url(PORTS.b));

    expect((await c.api("POST", "/v1/vms/fo1/start")).status).toBeLessThan(300);
    await c.waitVmState("fo1", "running", 120_000);
    const vm = (await c.vm("fo1")) as unknown as VmBody;
    await c.waitConsole("fo1", /NC-VERIFY PASS seed=11 .*round=\d+/);
    const m = (await c.api<MigrationBody>("POST", "/v1/vms/fo1/migrations", {})).body;
    // server-b dies by itself; the first server takes over.
    await waitFor(() => c.daemons.get("server-b")?.proc.signalCode === "SIGKILL", {
      timeoutMs: 180_000,
      intervalMs: 250,
      what: "server-b to die at the failpoint",
    });
    c.pointAt(url(PORTS.a));
    await waitFor(async () => (await leader())?.apiUrl === url(PORTS.a), {
      timeoutMs: 20_000,
      intervalMs: 200,
      what: "the first server to lead",
    });
    const end = await c.waitMigrationEnd<MigrationBody>(m.id, 240_000);
    console.log(
      `leader killed after recording switching-over: migration ${end.state} (${end.stateReason}); rollback: ${end.rollback || "-"}`,
    );
    expect(["completed", "failed"]).toContain(end.state);
    const expectedHost = (end.state === "completed" ? end.targetHost : end.sourceHost) as "m1" | "m2";
    const otherHost = expectedHost === "m1" ? "m2" : "m1";
    const running = (await c.waitVmState("fo1", "running", 60_000)) as unknown as VmBody;
    expect(running.host).toBe(expectedHost);
    await waitFor(
      async () => {
        const n = await qemuCount(vm.id);
        return n[expectedHost] === 1 && n[otherHost] === 0;
      },
      { timeoutMs: 60_000, what: `exactly one QEMU of fo1, on ${expectedHost}` },
    );
    const before = await c.console("fo1", 400);
    const rounds = (lines: string[]) =>
      Math.max(0, ...lines.map((l) => Number(/NC-VERIFY PASS seed=11 .*round=(\d+)/.exec(l)?.[1] ?? 0)));
    await waitFor(async () => rounds(await c.console("fo1", 400)) > rounds(before), {
      timeoutMs: 60_000,
      what: "fo1 to verify its pattern again",
    });
    expect((await c.console("fo1", 400)).filter((l) => l.includes("NC-VERIFY FAIL"))).toEqual([]);
  });
});
