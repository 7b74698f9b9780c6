// HA restart with fencing, with a real server, three real agents and TCG guests, default
// HA settings (heartbeat timeout 10 s, lease 15 s). Two faults, each on a VM whose disk is
// in a shared storage pool: `kill -9` of its agent (QEMU survives an agent crash, so the
// agent's fence watchdog must kill it), and a partition of its host from the server while
// the host keeps running (the agent in its own network namespace, its link cut). Either
// way the VM runs again on another host, the old host's QEMU was killed before the new
// one started (checked on a timeline sampled every 100 ms, not only by QEMU's own image
// locking), the pool disk is never open in two QEMUs, a non-HA VM on the dead host is not
// restarted, and the old host releases its leftover copy (never the pool disk) once back.
import { execFile } from "node:child_process";
import { mkdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../src/lib/wait.js";
import { deleteNamespace, emulatorUnavailableReason } from "../src/testing/wanem/netns.js";
import { guestImageManifest, TestCluster } from "./helpers/cluster.js";
import { fetchEvents } from "./helpers/events.js";

/** An event as the stream carries it, with its time. */
interface TimedEvent {
  type: string;
  resourceId: string | null;
  at: string;
  data: Record<string, unknown>;
}

const run = promisify(execFile);
const unavailable = emulatorUnavailableReason();
if (unavailable) console.warn(`Skipping the HA partition case: ${unavailable}`);

const SERVER_PORT = 18720;
const AGENTS = { h1: 18721, h2: 18722, h3: 18723 } as const;
type AgentName = keyof typeof AGENTS;
const AGENT_FLAGS = ["--memory", "1536", "--stop-grace", "5"];
// h3 lives in its own network namespace, joined to the root one by a veth pair.
const NS = `ncdw-${process.pid}-ha`;
const VETH = `ncha${process.pid % 100_000}`;
const ROOT_ADDR = "10.213.7.1";
const NS_ADDR = "10.213.7.2";

interface VmBody {
  id: string;
  name: string;
  state: string;
  host: string | null;
  ha: string;
  storagePool: string | null;
  stateReason: string;
}

/** QEMUs whose command line names `needle`, with their pids. */
async function qemusNaming(needle: string): Promise<number[]> {
  const { readdir } = await import("node:fs/promises");
  const pids: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "");
    if (cmdline.includes("qemu-system") && cmdline.includes(needle)) pids.push(Number(entry));
  }
  return pids;
}

/**
 * Samples, every 100 ms, which QEMUs have the pool disk open (their command line names
 * it) and on which host's VM dir, until stopped: the timeline the ordering is checked on.
 */
function sampleDisk(disk: string, hostDirs: Record<string, string>) {
  const samples: { at: number; hosts: string[] }[] = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const hosts: string[] = [];
      for (const pid of await qemusNaming(disk)) {
        const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
        const host = Object.entries(hostDirs).find(([, d]) => cmdline.includes(d))?.[0] ?? "?";
        hosts.push(host);
      }
      samples.push({ at: Date.now(), hosts });
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  return {
    samples,
    stop: async () => {
      stopped = true;
      await loop;
    },
  };
}

describe("HA restart with fencing", { timeout: 600_000 }, () => {
  let c: TestCluster;
  let poolDir = "";
  let nsReady = false;

  beforeAll(async () => {
    const manifest = await guestImageManifest();
    c = await TestCluster.create(SERVER_PORT);
    await c.startServer(["--tls-name", ROOT_ADDR], { listenHost: "0.0.0.0" });
    await c.startAgent("h1", AGENTS.h1, AGENT_FLAGS);
    await c.startAgent("h2", AGENTS.h2, AGENT_FLAGS);
    if (!unavailable) {
      await deleteNamespace(NS);
      await run("ip", ["netns", "add", NS]);
      await run("ip", ["link", "add", `${VETH}r`, "type", "veth", "peer", "name", `${VETH}n`]);
      await run("ip", ["link", "set", `${VETH}n`, "netns", NS]);
      await run("ip", ["addr", "add", `${ROOT_ADDR}/30`, "dev", `${VETH}r`]);
      await run("ip", ["link", "set", `${VETH}r`, "up"]);
      await run("ip", ["-n", NS, "addr", "add", `${NS_ADDR}/30`, "dev", `${VETH}n`]);
      await run("ip", ["-n", NS, "link", "set", `${VETH}n`, "up"]);
      await run("ip", ["-n", NS, "link", "set", "lo", "up"]);
      nsReady = true;
      await c.startAgent("h3", AGENTS.h3, [...AGENT_FLAGS, "--data-address", NS_ADDR], {
        netns: NS,
        host: NS_ADDR,
        serverUrl: `https://${ROOT_ADDR}:${SERVER_PORT}`,
      });
    }
    const res = await c.cli(["image", "import", "guest", "--manifest", manifest]);
    expect(res.code, res.stderr).toBe(0);
    poolDir = path.join(c.dir, "pool");
    await mkdir(poolDir);
    const added = await c.cli(["storage", "pool", "add", "shared", "--path", poolDir, "--json"]);
    expect(added.code, added.stderr).toBe(0);
    const names = unavailable ? ["h1", "h2"] : ["h1", "h2", "h3"];
    await waitFor(
      async () => {
        const p = (await c.api<{ hosts: string[] }>("GET", "/v1/storage-pools/shared")).body;
        return names.every((n) => p.hosts.includes(n)) || undefined;
      },
      { timeoutMs: 30_000, what: "every host to see the pool" },
    );
  }, 300_000);

  afterAll(async () => {
    await c?.destroy();
    if (nsReady) {
      await run("ip", ["link", "del", `${VETH}r`]).catch(() => {});
      await deleteNamespace(NS);
    }
  });

  const vm = async (name: string) => (await c.vm(name)) as unknown as VmBody;
  const cordon = async (hosts: string[], cordoned: boolean) => {
    for (const h of hosts)
      expect((await c.api("POST", `/v1/hosts/${h}/${cordoned ? "cordon" : "uncordon"}`, {})).status).toBe(
        200,
      );
  };
  const events = async (vmId: string) =>
    ((await fetchEvents(c, 0)) as unknown as TimedEvent[]).filter((e) => e.resourceId === vmId);

  /** Creates a VM on `host` (the others cordoned meanwhile). */
  async function createOn(host: AgentName, name: string, body: Record<string, unknown>): Promise<VmBody> {
    const others = Object.keys(AGENTS).filter((h) => h !== host && (h !== "h3" || !unavailable));
    await cordon(others, true);
    try {
      const res = await c.api<VmBody>("POST", "/v1/vms", { name, image: "guest", memoryMiB: 256, ...body });
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      expect(res.body.host).toBe(host);
    } finally {
      await cordon(others, false);
    }
    await c.waitVmState(name, "running");
    await c.waitConsole(name, /NC-READY/);
    return vm(name);
  }

  /** The ha.restart event of the VM (its `at` is when the server moved it). */
  async function restartEvent(vmId: string): Promise<TimedEvent> {
    const e = (await events(vmId)).find((x) => x.type === "ha.restart");
    if (!e) throw new Error(`no ha.restart event for ${vmId}`);
    return e;
  }

  it("refuses an HA VM on a local disk with NOVA_HA_LOCAL_DISK, creating nothing", async () => {
    const before = (await c.api<{ vms: unknown[] }>("GET", "/v1/vms")).body.vms.length;
    const res = await c.cli(["vm", "create", "ha-local", "--image", "guest", "--ha", "restart"]);
    expect(res.code).not.toBe(0);
    expect(res.stderr).toContain("[NOVA_HA_LOCAL_DISK]");
    expect(res.stderr).toContain("--storage-pool");
    expect((await c.api<{ vms: unknown[] }>("GET", "/v1/vms")).body.vms.length).toBe(before);
    expect(await c.vm("ha-local")).toBeUndefined();
  });

  it("kill -9 of the agent: its watchdog kills the HA VM, which runs again elsewhere on the same pool disk; a non-HA VM there is not restarted", async () => {
    const ha = await createOn("h1", "ha-kill", { storagePool: "shared", ha: "restart" });
    const plain = await createOn("h1", "plain-kill", {});
    const disk = path.join(poolDir, "vms", ha.id, "disk.qcow2");
    const inode = (await stat(disk)).ino;
    expect(await qemusNaming(disk)).toHaveLength(1);
    const sampler = sampleDisk(disk, {
      h1: c.agentDir("h1"),
      h2: c.agentDir("h2"),
      h3: c.agentDir("h3"),
    });
    const killedAt = Date.now();
    await c.stop("h1", "SIGKILL");
    const moved = await waitFor(
      async () => {
        const v = await vm("ha-kill");
        return v.host !== "h1" && v.state === "running" ? v : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 250, what: "ha-kill to run on another host" },
    );
    await waitFor(async () => (await qemusNaming(disk)).length === 1 || undefined, {
      timeoutMs: 30_000,
      what: "the new QEMU to open the pool disk",
    });
    await sampler.stop();

    // The old QEMU was killed by h1's watchdog, before the server restarted the VM.
    const fenced = JSON.parse(
      await readFile(path.join(c.agentDir("h1"), "vms", ha.id, "fenced.json"), "utf8"),
    ) as {
      at: string;
    };
    const restart = await restartEvent(ha.id);
    expect(Date.parse(fenced.at)).toBeGreaterThan(killedAt);
    expect(Date.parse(fenced.at)).toBeLessThan(Date.parse(restart.at));
    expect(restart.data).toMatchObject({ from: "h1", to: moved.host, by: "lease" });
    // Never two QEMUs on the disk; h1's gone before the new host's appeared.
    expect(Math.max(...sampler.samples.map((s) => s.hosts.length))).toBeLessThanOrEqual(1);
    const lastOld = Math.max(...sampler.samples.filter((s) => s.hosts.includes("h1")).map((s) => s.at));
    const firstNew = Math.min(
      ...sampler.samples.filter((s) => s.hosts.includes(moved.host!)).map((s) => s.at),
    );
    expect(lastOld).toBeLessThan(firstNew);
    // The same disk, not a fresh one.
    expect((await stat(disk)).ino).toBe(inode);
    await c.waitConsole("ha-kill", /NC-READY/);
    // The non-HA VM stays with its host.
    expect(await vm("plain-kill")).toMatchObject({ host: "h1", ha: "none" });
    expect((await events(plain.id)).some((e) => e.type.startsWith("ha."))).toBe(false);
    // And HA cannot be turned on for it: its disk is local.
    const set = await c.cli(["vm", "set", "plain-kill", "--ha", "restart"]);
    expect(set.code).not.toBe(0);
    expect(set.stderr).toContain("[NOVA_HA_LOCAL_DISK]");
    expect((await vm("plain-kill")).ha).toBe("none");

    // h1 comes back: it runs nothing of ha-kill and removes its leftover copy; the pool disk stays.
    await c.startAgent("h1", AGENTS.h1, AGENT_FLAGS);
    await waitFor(
      async () =>
        (await stat(path.join(c.agentDir("h1"), "vms", ha.id)).then(
          () => false,
          () => true,
        )) || undefined,
      { timeoutMs: 30_000, what: "h1 to release its leftover copy" },
    );
    expect((await stat(disk)).ino).toBe(inode);
    expect(await vm("ha-kill")).toMatchObject({ host: moved.host, state: "running" });
    expect(await qemusNaming(disk)).toHaveLength(1);
    expect((await events(ha.id)).map((e) => e.type)).toContain("ha.fenced");
  });

  it.skipIf(unavailable !== null)(
    "a partition of the host from the server: its agent kills the HA VM before the server restarts it elsewhere",
    async () => {
      await waitFor(
        async () =>
          (await c.api<{ liveness: string }>("GET", "/v1/hosts/h1")).body.liveness === "alive" || undefined,
        { timeoutMs: 30_000, what: "h1 alive again" },
      );
      const ha = await createOn("h3", "ha-cut", { storagePool: "shared", ha: "restart" });
      const disk = path.join(poolDir, "vms", ha.id, "disk.qcow2");
      const inode = (await stat(disk)).ino;
      const agentPid = c.daemonPid("h3")!;
      const sampler = sampleDisk(disk, {
        h1: c.agentDir("h1"),
        h2: c.agentDir("h2"),
        h3: c.agentDir("h3"),
      });
      const cutAt = Date.now();
      await run("ip", ["-n", NS, "link", "set", `${VETH}n`, "down"]);
      try {
        const moved = await waitFor(
          async () => {
            const v = await vm("ha-cut");
            return v.host !== "h3" && v.state === "running" ? v : undefined;
          },
          { timeoutMs: 120_000, intervalMs: 250, what: "ha-cut to run on another host" },
        );
        await waitFor(async () => (await qemusNaming(disk)).length === 1 || undefined, {
          timeoutMs: 30_000,
          what: "the new QEMU to open the pool disk",
        });
        await sampler.stop();
        // The agent kept running through the cut: it was cut off, not dead.
        expect(() => process.kill(agentPid, 0)).not.toThrow();
        const fenced = JSON.parse(
          await readFile(path.join(c.agentDir("h3"), "vms", ha.id, "fenced.json"), "utf8"),
        ) as { at: string };
        const restart = await restartEvent(ha.id);
        expect(Date.parse(fenced.at)).toBeGreaterThan(cutAt);
        expect(Date.parse(fenced.at)).toBeLessThan(Date.parse(restart.at));
        expect(Math.max(...sampler.samples.map((s) => s.hosts.length))).toBeLessThanOrEqual(1);
        const lastOld = Math.max(...sampler.samples.filter((s) => s.hosts.includes("h3")).map((s) => s.at));
        const firstNew = Math.min(
          ...sampler.samples.filter((s) => s.hosts.includes(moved.host!)).map((s) => s.at),
        );
        expect(lastOld).toBeLessThan(firstNew);
        expect(lastOld).toBeLessThan(Date.parse(restart.at));
      } finally {
        await run("ip", ["-n", NS, "link", "set", `${VETH}n`, "up"]);
      }
      // Healed: h3 does not run the VM again and removes its copy; the pool disk stays.
      await waitFor(
        async () =>
          (await stat(path.join(c.agentDir("h3"), "vms", ha.id)).then(
            () => false,
            () => true,
          )) || undefined,
        { timeoutMs: 60_000, what: "h3 to release its leftover copy" },
      );
      expect((await stat(disk)).ino).toBe(inode);
      expect(await qemusNaming(disk)).toHaveLength(1);
      expect((await vm("ha-cut")).state).toBe("running");
    },
  );
});
