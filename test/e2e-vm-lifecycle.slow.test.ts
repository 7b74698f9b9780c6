// End to end with a real server, two real agents and real QEMU guests (TCG): the VM
// lifecycle, restarts of agent and server, QEMU crashes, and bad inputs.
import { readFile, stat } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../src/lib/wait.js";
import { guestImageManifest, qemuPidsUnder, TestCluster } from "./helpers/cluster.js";
import { fetchEvents } from "./helpers/events.js";

const SERVER_PORT = 17710;
const A1_PORT = 17811;
const A2_PORT = 17812;
const AGENT_FLAGS = ["--memory", "1024", "--stop-grace", "20"];

interface VmBody {
  id: string;
  name: string;
  state: string;
  stateReason: string;
  host: string;
  observedState: string;
}

describe("a real VM end to end", () => {
  let c: TestCluster;
  let manifest: string;

  beforeAll(async () => {
    manifest = await guestImageManifest();
    c = await TestCluster.create(SERVER_PORT);
    await c.startServer(["--heartbeat-timeout", "4"]);
    await c.startAgent("a1", A1_PORT, AGENT_FLAGS);
    await c.startAgent("a2", A2_PORT, AGENT_FLAGS);
  }, 180_000);

  afterAll(async () => {
    await c?.destroy();
  });

  it("registers both agents as live hosts with their accelerator", async () => {
    const res = await c.cli(["host", "list", "--json"]);
    expect(res.code).toBe(0);
    const hosts = JSON.parse(res.stdout) as {
      name: string;
      liveness: string;
      accel: string;
      memoryMiB: number;
    }[];
    expect(hosts.map((h) => h.name)).toEqual(["a1", "a2"]);
    for (const h of hosts) {
      expect(h.liveness).toBe("alive");
      expect(["kvm", "tcg"]).toContain(h.accel);
      expect(h.memoryMiB).toBe(1024);
    }
  });

  it("refuses missing, wrong and under-privileged tokens", async () => {
    expect((await c.api("GET", "/v1/vms", undefined, null)).status).toBe(401);
    const wrong = await c.api<{ error: { code: string } }>("GET", "/v1/vms", undefined, "nva_wrong");
    expect(wrong.status).toBe(401);
    expect(wrong.body.error.code).toBe("NOVA_UNAUTHENTICATED");
    // A join token is no API token at all.
    const join = await c.api<{ error: { code: string; message: string } }>(
      "GET",
      "/v1/vms",
      undefined,
      await c.joinToken("someone"),
    );
    expect(join.status).toBe(401);
    expect((await c.api("GET", "/v1/openapi.json")).status).toBe(200);
  });

  it("imports the guest image on every live host", async () => {
    const res = await c.cli(["image", "import", "guest", "--manifest", manifest]);
    expect(res.stderr + res.stdout).toContain("Imported image guest");
    expect(res.code).toBe(0);
    const image = (await c.api<{ hosts: string[]; kernelDigest: string }>("GET", "/v1/images/guest")).body;
    expect(image.hosts).toEqual(["a1", "a2"]);
    expect(image.kernelDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
  });

  it("rejects bad input with the documented errors and changes nothing", async () => {
    const malformed = await c.api<{ error: { code: string } }>(
      "POST",
      "/v1/vms",
      undefined,
      c.adminToken,
      "{not json",
    );
    expect(malformed.status).toBe(400);
    expect(malformed.body.error.code).toBe("NOVA_BAD_REQUEST");

    const invalid = await c.api<{ error: { message: string } }>("POST", "/v1/vms", {
      name: "Bad Name!",
      image: "guest",
    });
    expect(invalid.status).toBe(400);
    expect(invalid.body.error.message).toContain("body.name");

    const unknownImage = await c.api<{ error: { code: string; message: string } }>("POST", "/v1/vms", {
      name: "x1",
      image: "nope",
    });
    expect(unknownImage.status).toBe(404);
    expect(unknownImage.body.error.message).toContain("Image nope not found");

    const tooBig = await c.api<{
      error: {
        code: string;
        details: { neededMemoryMiB: number; largestFreeHost: { freeMemoryMiB: number } };
      };
    }>("POST", "/v1/vms", { name: "huge", image: "guest", memoryMiB: 4096 });
    expect(tooBig.status).toBe(422);
    expect(tooBig.body.error.code).toBe("NOVA_NO_CAPACITY");
    expect(tooBig.body.error.details.neededMemoryMiB).toBe(4096);
    expect(tooBig.body.error.details.largestFreeHost.freeMemoryMiB).toBe(1024);

    expect((await c.api("GET", "/v1/vms/nope")).status).toBe(404);
    expect((await c.api("POST", "/v1/vms/nope/start")).status).toBe(404);
    const cli = await c.cli(["vm", "show", "nope"]);
    expect(cli.code).toBe(1);
    expect(cli.stderr).toContain("VM nope not found");

    expect((await c.api<{ vms: unknown[] }>("GET", "/v1/vms")).body.vms).toEqual([]);
  });

  it("creates a VM that runs: the guest's heartbeat shows in its console", async () => {
    const res = await c.cli([
      "vm",
      "create",
      "vm1",
      "--image",
      "guest",
      "--memory",
      "256",
      "--wait",
      "--kernel-args",
      "nc.pattern_seed=7 nc.pattern_mem_mb=8 nc.pattern_disk_mb=8 nc.verify_every=3",
    ]);
    expect(res.stderr).toContain("running");
    expect(res.code).toBe(0);
    await c.waitConsole("vm1", /NC-HEARTBEAT seq=3 /);
    await c.waitConsole("vm1", /NC-PATTERN-WRITTEN seed=7 .*disk=written/);
    await c.waitConsole("vm1", /NC-VERIFY PASS seed=7/);
    const events = await fetchEvents(c, 0);
    const vm1States = events
      .filter((e) => e.type === "vm.state" && e.data.name === "vm1")
      .map((e) => e.data.to);
    expect(vm1States).toEqual(["starting", "running"]);
  });

  it("places the next VM on the host with the most free memory", async () => {
    const vm1 = (await c.vm("vm1")) as unknown as VmBody;
    const res = await c.api<VmBody>("POST", "/v1/vms", { name: "vm2", image: "guest", memoryMiB: 128 });
    expect(res.status).toBe(201);
    expect(res.body.host).not.toBe(vm1.host);
    await c.waitVmState("vm2", "running");
  });

  it("refuses an illegal transition with the state and what it allows", async () => {
    const res = await c.api<{
      error: { code: string; details: { state: string; allowedActions: string[] } };
    }>("POST", "/v1/vms/vm1/start");
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe("NOVA_ILLEGAL_STATE");
    expect(res.body.error.details.state).toBe("running");
    expect(res.body.error.details.allowedActions).toEqual(["stop", "restart", "delete", "migrate"]);
  });

  it("keeps the VM running through an agent crash and re-adopts it", async () => {
    const vm1 = (await c.vm("vm1")) as unknown as VmBody;
    const agentDir = c.agentDir(vm1.host);
    const [pidBefore] = await qemuPidsUnder(agentDir.concat("/vms/", vm1.id));
    expect(pidBefore).toBeDefined();
    const seqBefore = Number((await c.waitConsole("vm1", /NC-HEARTBEAT seq=(\d+)/))[1]);

    await c.stop(vm1.host, "SIGKILL");
    await c.startAgent(vm1.host, vm1.host === "a1" ? A1_PORT : A2_PORT, AGENT_FLAGS);

    expect(await qemuPidsUnder(agentDir.concat("/vms/", vm1.id))).toEqual([pidBefore]);
    // The guest was not rebooted: its heartbeat counter keeps counting up.
    const m = await c.waitConsole(
      "vm1",
      new RegExp(`NC-HEARTBEAT seq=(${seqBefore + 3}|${seqBefore + 4}|${seqBefore + 5}) `),
    );
    expect(Number(m[1])).toBeGreaterThan(seqBefore);
    expect(((await c.vm("vm1")) as unknown as VmBody).state).toBe("running");
    // And the re-adopted QEMU is driven again: a stop works through QMP.
  });

  it("loses nothing across a server restart", async () => {
    const before = (await c.api<{ vms: VmBody[] }>("GET", "/v1/vms")).body.vms;
    await c.stop("server", "SIGTERM");
    await c.startServer(["--heartbeat-timeout", "4"]);
    const after = (await c.api<{ vms: VmBody[] }>("GET", "/v1/vms")).body.vms;
    expect(after.map((v) => [v.id, v.name, v.state, v.host])).toEqual(
      before.map((v) => [v.id, v.name, v.state, v.host]),
    );
    // Agents reconnect by themselves and the hosts stay alive.
    await waitFor(
      async () => {
        const hosts = (
          await c.api<{ hosts: { liveness: string; lastHeartbeatAt: string }[] }>("GET", "/v1/hosts")
        ).body.hosts;
        return hosts.every(
          (h) => h.liveness === "alive" && Date.parse(h.lastHeartbeatAt) > Date.now() - 3000,
        );
      },
      { timeoutMs: 20_000, what: "agents to heartbeat the restarted server" },
    );
  });

  it("stops the guest gracefully, starts it with its disk intact, and restarts it", async () => {
    const stop = await c.cli(["vm", "stop", "vm1", "--wait"]);
    expect(stop.code).toBe(0);
    expect(((await c.vm("vm1")) as unknown as VmBody).stateReason).toMatch(/stopped|powered off/);
    await c.waitConsole("vm1", /NC-SHUTDOWN/);
    const vm1 = (await c.vm("vm1")) as unknown as VmBody;
    expect(await qemuPidsUnder(`${c.agentDir(vm1.host)}/vms/${vm1.id}`)).toEqual([]);

    const start = await c.cli(["vm", "start", "vm1", "--wait"]);
    expect(start.code).toBe(0);
    // The disk pattern written on the first boot is found and verified at this boot
    // (round 0 is the boot-time check of an existing pattern).
    await c.waitConsole("vm1", /NC-PATTERN-WRITTEN seed=7 .*disk=existing/);
    await c.waitConsole("vm1", /NC-VERIFY PASS seed=7 .*round=0/);

    const readyBefore = (await c.console("vm1", 2000)).filter((l) => l.includes("NC-READY")).length;
    const restart = await c.cli(["vm", "restart", "vm1", "--wait"]);
    expect(restart.code).toBe(0);
    await waitFor(
      async () => (await c.console("vm1", 2000)).filter((l) => l.includes("NC-READY")).length > readyBefore,
      {
        timeoutMs: 90_000,
        what: "the guest to boot again after restart",
      },
    );
  });

  it("marks the VM failed with the reason when its QEMU is killed", async () => {
    const vm1 = (await c.vm("vm1")) as unknown as VmBody;
    const [pid] = await qemuPidsUnder(`${c.agentDir(vm1.host)}/vms/${vm1.id}`);
    expect(pid).toBeDefined();
    process.kill(pid!, "SIGKILL");
    const failed = (await c.waitVmState("vm1", "failed", 30_000)) as unknown as VmBody;
    expect(failed.stateReason).toMatch(/SIGKILL|exited unexpectedly/);
    const start = await c.cli(["vm", "start", "vm1", "--wait"]);
    expect(start.code).toBe(0);
  });

  it("deletes a VM: QEMU gone, disk gone, row gone", async () => {
    const vm2 = (await c.vm("vm2")) as unknown as VmBody;
    const dir = `${c.agentDir(vm2.host)}/vms/${vm2.id}`;
    const res = await c.cli(["vm", "delete", "vm2", "--wait"]);
    expect(res.code).toBe(0);
    expect(await c.vm("vm2")).toBeUndefined();
    expect(await qemuPidsUnder(dir)).toEqual([]);
    await expect(stat(dir)).rejects.toThrow(/ENOENT/);
  });

  it("never places a VM on a cordoned or dead host", async () => {
    const vm1 = (await c.vm("vm1")) as unknown as VmBody;
    const other = vm1.host === "a1" ? "a2" : "a1";
    expect((await c.cli(["host", "cordon", other])).code).toBe(0);
    const onCordonedOnly = await c.api<VmBody>("POST", "/v1/vms", {
      name: "vm3",
      image: "guest",
      memoryMiB: 128,
      start: false,
    });
    expect(onCordonedOnly.body.host).toBe(vm1.host);
    expect((await c.api("DELETE", "/v1/vms/vm3")).status).toBe(202);
    await waitFor(async () => (await c.vm("vm3")) === undefined, {
      timeoutMs: 20_000,
      what: "vm3 to be deleted",
    });
    expect((await c.cli(["host", "uncordon", other])).code).toBe(0);

    await c.stop(other, "SIGTERM");
    await waitFor(
      async () => (await c.api<{ liveness: string }>("GET", `/v1/hosts/${other}`)).body.liveness === "dead",
      {
        timeoutMs: 20_000,
        what: `host ${other} to be marked dead`,
      },
    );
    const placed = await c.api<VmBody>("POST", "/v1/vms", {
      name: "vm4",
      image: "guest",
      memoryMiB: 128,
      start: false,
    });
    expect(placed.body.host).toBe(vm1.host);
    const events = await fetchEvents(c, 0);
    expect(events.some((e) => e.type === "host.liveness" && e.data.liveness === "dead")).toBe(true);
  });

  it("exposes health and Prometheus metrics with VM states", async () => {
    const health = await c.fetch("/healthz");
    expect(health.status).toBe(200);
    const metrics = await (
      await c.fetch("/metrics", { headers: { authorization: `Bearer ${c.adminToken}` } })
    ).text();
    expect(metrics).toMatch(/novacron_vms\{state="running"\} 1/);
    expect(metrics).toContain("novacron_http_requests_total");
    const token = await readFile(`${c.dir}/server/admin.token`);
    expect((await stat(`${c.dir}/server/admin.token`)).mode & 0o777).toBe(0o600);
    expect(token.length).toBeGreaterThan(20);
  });
});
