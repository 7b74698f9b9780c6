/**
 * The hand-off across a real inter-site link (docs/federation.md §10): two clusters in
 * two network namespaces joined by the WAN emulator, each server on its own PostgreSQL
 * server of the suite's own, one agent each. The federation's sync, ACP's requests and
 * the migration's DWCP stream all cross the emulated link; the test reaches the APIs over
 * the unemulated management network. Faults at the steps of the hand-off: the link cut
 * mid-transfer, right after the source released the VM, and after the destination owns
 * it but before the source heard so; each database stopped and started in the middle.
 * A failpoint's `stop` (src/lib/failpoints.ts) freezes a server right after the step
 * committed, so the fault lands exactly there. Afterwards exactly one copy runs, intact,
 * both clusters agree on owner and epoch, and a source that released the VM never ran it
 * again, even once its partition healed. Skips when not root.
 */
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { promisify } from "node:util";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../src/lib/wait.js";
import { ADDR_A, ADDR_B, WanLink } from "../src/testing/wanem/link.js";
import { emulatorUnavailableReason } from "../src/testing/wanem/netns.js";
import { guestImageManifest, qemuPidsUnder, TestCluster } from "./helpers/cluster.js";
import { migrationEnd, printDaemonWarnings, type WatchedDaemon } from "./helpers/daemon-warnings.js";
import { PrivatePostgres } from "./helpers/private-postgres.js";

const run = promisify(execFile);
const unavailable = emulatorUnavailableReason();
if (unavailable) console.warn(`Skipping the hand-off partition suite: ${unavailable}`);

const WORKLOAD = "nc.pattern_seed=23 nc.pattern_mem_mb=8 nc.pattern_disk_mb=8 nc.verify_every=2";
const PORTS = { east: 18200, west: 18210 } as const;
type Side = keyof typeof PORTS;

interface MigrationBody {
  id: string;
  state: string;
  stateReason: string;
}
interface FedVm {
  id: string;
  cluster: { name: string };
  epoch: number;
}
interface HandoffBody {
  vm: string;
  state: string;
}

describe.skipIf(unavailable !== null)(
  "hand-off across a cut link and restarted databases",
  { timeout: 400_000 },
  () => {
    let link: WanLink;
    const pg = {} as Record<Side, PrivatePostgres>;
    const c = {} as Record<Side, TestCluster>;
    const agentName = { east: "e1", west: "w1" } as const;

    const site = (s: Side) =>
      s === "east"
        ? { ns: link.nsA, mgmt: link.management!.a, addr: ADDR_A }
        : { ns: link.nsB, mgmt: link.management!.b, addr: ADDR_B };

    /** Starts (or restarts) `s`'s server in its site, with the failpoints given. */
    async function startServer(s: Side, failpoints?: string) {
      const { ns, mgmt, addr } = site(s);
      return c[s].startServer(
        [
          "--database-url",
          pg[s].url(`acp_${s}`),
          "--cluster-name",
          s,
          "--advertise-host",
          addr,
          "--federation-port",
          String(PORTS[s] + 1),
          "--heartbeat-timeout",
          "6",
          "--no-exec-workers",
        ],
        {
          listenHost: "0.0.0.0",
          netns: ns,
          reachAt: mgmt,
          ...(failpoints ? { env: { NOVACRON_FAILPOINTS: failpoints } } : {}),
        },
      );
    }

    async function restartServer(s: Side, failpoints?: string) {
      await c[s].stop("server", "SIGKILL");
      return startServer(s, failpoints);
    }

    const cut = () => run("ip", ["-n", link.nsA, "link", "set", "dwcp0", "down"]);
    const heal = () => run("ip", ["-n", link.nsA, "link", "set", "dwcp0", "up"]);

    /** Waits until the process stands still (a failpoint's SIGSTOP). */
    async function stopped(pid: number, what: string) {
      await waitFor(
        async () => {
          const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
          return stat.slice(stat.lastIndexOf(")") + 2).startsWith("T");
        },
        { timeoutMs: 120_000, intervalMs: 50, what },
      );
    }

    const qemus = async (vmId: string) => ({
      east: (await qemuPidsUnder(`${c.east.agentDir("e1")}/vms/${vmId}`)).length,
      west: (await qemuPidsUnder(`${c.west.agentDir("w1")}/vms/${vmId}`)).length,
    });

    function lastRound(lines: string[]): number {
      return Math.max(
        0,
        ...lines.map((l) => Number(/NC-VERIFY PASS seed=23 .*round=(\d+)/.exec(l)?.[1] ?? 0)),
      );
    }

    async function createRunning(name: string): Promise<{ id: string; round: number }> {
      const created = await c.east.api<{ id: string }>("POST", "/v1/vms", {
        name,
        image: "guest",
        memoryMiB: 256,
        kernelArgs: WORKLOAD,
      });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      await c.east.waitVmState(name, "running");
      await c.east.waitConsole(name, /NC-VERIFY PASS seed=23 .*round=1/);
      return { id: created.body.id, round: lastRound(await c.east.console(name, 400)) };
    }

    async function startMigration(name: string): Promise<string> {
      const res = await c.east.api<MigrationBody>("POST", `/v1/vms/${name}/migrations`, {
        targetCluster: "west",
      });
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      return res.body.id;
    }

    /**
     * Starts a migration of a new running VM `name` with `side`'s server restarted to freeze
     * at failpoint `at`, and waits until it stands still there: the case then places its
     * fault and sends SIGCONT to `pid`.
     */
    async function migrateFrozenAt(name: string, side: Side, at: string) {
      const vm = await createRunning(name);
      await restartServer(side, `${at}=stop`);
      // A restarted source adopts its QEMU again before the VM may move.
      if (side === "east") await c.east.waitVmState(name, "running");
      const id = await startMigration(name);
      const pid = c[side].daemonPid("server")!;
      await stopped(pid, `${side}'s server to stop at ${at}`);
      return { vm, id, pid };
    }

    async function handoffState(s: Side, vm: string): Promise<string | undefined> {
      const { body } = await c[s].api<{ handoffs: HandoffBody[] }>("GET", "/v1/federation/handoffs");
      return body.handoffs.find((h) => h.vm === vm)?.state;
    }

    /** The migration's end; its processes' last warnings go to the output when it did not complete. */
    const daemons = (): WatchedDaemon[] =>
      (["east", "west"] as const).flatMap((s): WatchedDaemon[] => [
        [`${s} server`, c[s], "server"],
        [`${s} ${agentName[s]}`, c[s], agentName[s]],
      ]);
    const ended = (id: string) => migrationEnd<MigrationBody>(c.east, id, 240_000, daemons());

    /**
     * Stops `side`'s database while its server stands frozen at a failpoint, lets the
     * server go on, and waits until it noticed (its health turns 503).
     */
    async function stopDatabaseUnder(side: Side, frozenPid: number): Promise<void> {
      await pg[side].stopServer();
      process.kill(frozenPid, "SIGCONT");
      await waitFor(async () => (await c[side].api("GET", "/healthz")).status === 503 || undefined, {
        timeoutMs: 30_000,
        what: `${side}'s server to notice its database is gone`,
      }).catch((err) => {
        printDaemonWarnings(daemons());
        throw err;
      });
    }

    /** The guest runs on `on` only, intact (no reboot), and both views put it there at `epoch`. */
    async function settledOn(on: Side, name: string, vmId: string, epoch: number, afterRound: number) {
      const other: Side = on === "east" ? "west" : "east";
      await c[on].waitVmState(name, "running", 120_000);
      await waitFor(async () => lastRound(await c[on].console(name, 400)) > afterRound || undefined, {
        timeoutMs: 120_000,
        what: `${name} to verify its pattern on ${on}`,
      });
      const lines = await c[on].console(name, 400);
      // A VM that arrived boots nothing; one that stayed keeps its first boot's line.
      expect(lines.filter((l) => l.startsWith("NC-READY"))).toHaveLength(on === "east" ? 1 : 0);
      expect(lines.filter((l) => l.includes("NC-VERIFY FAIL"))).toEqual([]);
      await waitFor(
        async () => {
          const q = await qemus(vmId);
          return q[on] === 1 && q[other] === 0;
        },
        { timeoutMs: 90_000, what: `one QEMU of ${name}, on ${on}` },
      );
      for (const s of ["east", "west"] as const)
        await waitFor(
          async () => {
            const vms = (await c[s].api<{ vms: FedVm[] }>("GET", "/v1/federation/vms")).body.vms.filter(
              (x) => x.id === vmId,
            );
            return vms.length === 1 && vms[0]!.cluster.name === on && vms[0]!.epoch === epoch;
          },
          { timeoutMs: 90_000, what: `${s}'s global view to show ${name} in ${on} at epoch ${epoch}` },
        );
      await waitFor(async () => (await c[other].vm(name)) === undefined, {
        timeoutMs: 90_000,
        what: `${name} gone from ${other}`,
      });
    }

    /** East's copy never ran again after it released: its console stopped where it stopped. */
    async function eastStayedPaused(name: string, checks: number) {
      const before = (await c.east.console(name, 400)).join("\n");
      for (let i = 0; i < checks; i++) {
        await new Promise((r) => setTimeout(r, 500));
        expect((await c.east.console(name, 400)).join("\n")).toBe(before);
      }
    }

    beforeAll(async () => {
      link = await WanLink.create({ spec: "metro", management: true });
      const manifest = await guestImageManifest();
      for (const s of ["east", "west"] as const) {
        pg[s] = await PrivatePostgres.start();
        await pg[s].createDatabase(`acp_${s}`);
        c[s] = await TestCluster.create(PORTS[s]);
        await startServer(s);
        const { ns, mgmt, addr } = site(s);
        await c[s].startAgent(
          agentName[s],
          PORTS[s] + 2,
          ["--memory", "1024", "--stop-grace", "10", "--data-address", addr],
          {
            netns: ns,
            host: mgmt,
            serverUrl: c[s].serverUrl,
          },
        );
        await waitFor(
          async () =>
            (await c[s].api<{ liveness: string }>("GET", `/v1/hosts/${agentName[s]}`)).body.liveness ===
              "alive" || undefined,
          { timeoutMs: 60_000, what: `${agentName[s]} alive` },
        );
        const imp = await c[s].cli(["image", "import", "guest", "--manifest", manifest]);
        expect(imp.code, imp.stderr).toBe(0);
      }
      const token = await c.east.api<{ token: string }>("POST", "/v1/federation/tokens", {});
      const added = await c.west.api("POST", "/v1/federation/peers", { token: token.body.token });
      expect(added.status, JSON.stringify(added.body)).toBe(201);
      await waitFor(
        async () => {
          const { body } = await c.east.api<{ clusters: { name: string; stale: boolean }[] }>(
            "GET",
            "/v1/federation/clusters",
          );
          return body.clusters.some((x) => x.name === "west" && !x.stale) || undefined;
        },
        { timeoutMs: 60_000, what: "west in east's federation view" },
      );
    }, 300_000);

    afterAll(async () => {
      await heal().catch(() => {});
      for (const s of ["east", "west"] as const) {
        await c[s]?.destroy().catch(() => {});
        await pg[s]?.destroy().catch(() => {});
      }
      await link?.close();
    });

    // Each case's guest goes when it is done, whichever cluster holds it; the link is whole.
    afterEach(async () => {
      await heal();
      for (const s of ["east", "west"] as const) {
        const pid = c[s].daemonPid("server");
        if (pid) process.kill(pid, "SIGCONT");
        const { vms } = (await c[s].api<{ vms: { name: string }[] }>("GET", "/v1/vms")).body;
        for (const v of vms) await c[s].api("DELETE", `/v1/vms/${v.name}`);
        await waitFor(
          async () => (await c[s].api<{ vms: unknown[] }>("GET", "/v1/vms")).body.vms.length === 0,
          {
            timeoutMs: 90_000,
            what: `the case's VMs deleted in ${s}`,
          },
        );
      }
    });

    it("the link cut mid-transfer: the migration rolls back, the VM runs on at the source, both sides abort once healed", async () => {
      const { vm, id, pid: east } = await migrateFrozenAt("p-transfer", "east", "acp.source.transferring");
      await cut();
      process.kill(east, "SIGCONT");
      const m = await ended(id);
      expect(m.state).toBe("failed");
      // West heard nothing of the abort yet: its copy waits, paused, never run.
      expect(lastRound(await c.west.console("p-transfer", 400))).toBe(0);
      await heal();
      for (const s of ["east", "west"] as const)
        await waitFor(async () => (await handoffState(s, "p-transfer")) === "aborted" || undefined, {
          timeoutMs: 120_000,
          what: `the hand-off aborted in ${s}`,
        });
      await settledOn("east", "p-transfer", vm.id, 1, vm.round);
      await restartServer("east");
    });

    it("the link cut right after the release: nothing runs while it is down, the destination takes the VM once healed", async () => {
      const { vm, id, pid: east } = await migrateFrozenAt("p-released", "east", "acp.source.released");
      await cut();
      process.kill(east, "SIGCONT");
      // East released the VM: its copy stays paused; west never heard and runs nothing.
      await eastStayedPaused("p-released", 6);
      expect(await qemus(vm.id)).toEqual({ east: 1, west: 1 });
      expect(lastRound(await c.west.console("p-released", 400))).toBe(0);
      expect((await c.east.api<MigrationBody>("GET", `/v1/migrations/${id}`)).body.state).toBe(
        "switching-over",
      );
      await heal();
      expect((await ended(id)).state).toBe("completed");
      await settledOn("west", "p-released", vm.id, 2, vm.round);
      await restartServer("east");
    });

    it("the link cut after the destination owns the VM, before the source heard: west runs it, east learns once healed", async () => {
      const { vm, id, pid: west } = await migrateFrozenAt("p-owned", "west", "acp.destination.owned");
      await cut();
      process.kill(west, "SIGCONT");
      // West runs the VM; east, cut off, keeps its released copy paused and the migration open.
      await waitFor(async () => lastRound(await c.west.console("p-owned", 400)) > vm.round || undefined, {
        timeoutMs: 90_000,
        what: "p-owned to run on west during the cut",
      });
      await eastStayedPaused("p-owned", 4);
      expect((await c.east.api<MigrationBody>("GET", `/v1/migrations/${id}`)).body.state).toBe(
        "switching-over",
      );
      expect(await handoffState("east", "p-owned")).toBe("released");
      await heal();
      expect((await ended(id)).state).toBe("completed");
      await settledOn("west", "p-owned", vm.id, 2, vm.round);
      await restartServer("west");
    });

    it("the source's database stopped right after the release and started again: the hand-off completes", async () => {
      const { vm, id, pid: east } = await migrateFrozenAt("p-db-east", "east", "acp.source.released");
      await stopDatabaseUnder("east", east);
      await eastStayedPaused("p-db-east", 4);
      await pg.east.startServer();
      expect((await ended(id)).state).toBe("completed");
      await settledOn("west", "p-db-east", vm.id, 2, vm.round);
      await restartServer("east");
    });

    it("the destination's database stopped right after it prepared and started again: the hand-off completes", async () => {
      const { vm, id, pid: west } = await migrateFrozenAt("p-db-west", "west", "acp.destination.prepared");
      await stopDatabaseUnder("west", west);
      // While west cannot record anything the VM runs on at east.
      expect(lastRound(await c.west.console("p-db-west", 400))).toBe(0);
      await pg.west.startServer();
      expect((await ended(id)).state).toBe("completed");
      await settledOn("west", "p-db-west", vm.id, 2, vm.round);
      await restartServer("west");
    });
  },
);
