// The hand-off survives a crash of either server at its critical steps (docs/federation.md
// §10): a failpoint (src/lib/failpoints.ts) kills the server exactly as `kill -9` would,
// right after the step committed, and the server is started again. Afterwards exactly one
// copy of the VM runs, both clusters agree on its owner and epoch, the guest's memory and
// disk are intact, and a source that released the VM never runs it again.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../src/lib/wait.js";
import { guestImageManifest, qemuPidsUnder, TestCluster } from "./helpers/cluster.js";
import { migrationEnd, printDaemonWarnings, type WatchedDaemon } from "./helpers/daemon-warnings.js";

const AGENT_FLAGS = ["--memory", "1024", "--stop-grace", "10"];
// A light guest: the faults are in the hand-off, not in pre-copy.
const WORKLOAD = "nc.pattern_seed=19 nc.pattern_mem_mb=8 nc.pattern_disk_mb=8 nc.verify_every=2";
const SERVER_FLAGS = {
  east: ["--cluster-name", "east", "--heartbeat-timeout", "6"],
  west: ["--cluster-name", "west", "--heartbeat-timeout", "6"],
};

interface VmBody {
  id: string;
  state: string;
  host: string;
}
interface MigrationBody {
  id: string;
  state: string;
  stateReason: string;
  rollback: string;
}
interface FedVm {
  id: string;
  name: string;
  cluster: { name: string };
  epoch: number;
}

describe("hand-off faults: a server killed at a step of the hand-off", { timeout: 300_000 }, () => {
  let east!: TestCluster;
  let west!: TestCluster;
  const clusters = () => ({ east, west });

  beforeAll(async () => {
    const manifest = await guestImageManifest();
    [east, west] = await Promise.all([TestCluster.create(17765), TestCluster.create(17775)]);
    await Promise.all([east.startServer(SERVER_FLAGS.east), west.startServer(SERVER_FLAGS.west)]);
    await Promise.all([east.startAgent("e1", 17866, AGENT_FLAGS), west.startAgent("w1", 17876, AGENT_FLAGS)]);
    for (const c of [east, west]) {
      const res = await c.cli(["image", "import", "guest", "--manifest", manifest]);
      expect(res.code, res.stderr).toBe(0);
    }
    const token = await east.cli(["cluster", "peer", "token", "--json"]);
    const added = await west.cli(["cluster", "peer", "add", JSON.parse(token.stdout).token]);
    expect(added.code, added.stderr).toBe(0);
  }, 240_000);

  afterAll(async () => {
    await Promise.all([east?.destroy(), west?.destroy()]);
  });

  // Each case's guest goes when it is done: TCG guests left running would slow the next
  // cases on a 2-core machine.
  afterEach(async () => {
    for (const c of [east, west]) {
      const { vms } = (await c.api<{ vms: { name: string }[] }>("GET", "/v1/vms")).body;
      for (const v of vms) await c.api("DELETE", `/v1/vms/${v.name}`);
      await waitFor(async () => (await c.api<{ vms: unknown[] }>("GET", "/v1/vms")).body.vms.length === 0, {
        timeoutMs: 60_000,
        what: "the case's VMs to be deleted",
      });
    }
  });

  /** Restarts `which`'s server, with the failpoints and extra flags given (none: a plain restart). */
  async function restart(which: "east" | "west", failpoints?: string, flags: string[] = []) {
    const c = clusters()[which];
    await c.stop("server", "SIGKILL");
    return c.startServer(
      [...SERVER_FLAGS[which], ...flags],
      failpoints ? { env: { NOVACRON_FAILPOINTS: failpoints } } : {},
    );
  }

  /** Kills `which`'s agent as `kill -9` would and starts it again, with the failpoints given. */
  async function restartAgent(which: "east" | "west", failpoints?: string) {
    const c = clusters()[which];
    const [name, port] = which === "east" ? ["e1", 17866] : ["w1", 17876];
    await c.stop(name as string, "SIGKILL");
    return c.startAgent(
      name as string,
      port as number,
      AGENT_FLAGS,
      failpoints ? { env: { NOVACRON_FAILPOINTS: failpoints } } : {},
    );
  }

  const qemus = async (vmId: string) => ({
    east: (await qemuPidsUnder(`${east.dir}/agents/e1/vms/${vmId}`)).length,
    west: (await qemuPidsUnder(`${west.dir}/agents/w1/vms/${vmId}`)).length,
  });

  async function createRunning(name: string): Promise<{ id: string; round: number }> {
    const created = await east.api<VmBody>("POST", "/v1/vms", {
      name,
      image: "guest",
      memoryMiB: 256,
      kernelArgs: WORKLOAD,
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    await east.waitVmState(name, "running");
    await east.waitConsole(name, /NC-VERIFY PASS seed=19 .*round=1/);
    return { id: created.body.id, round: lastRound(await east.console(name, 400)) };
  }

  function lastRound(lines: string[]): number {
    return Math.max(0, ...lines.map((l) => Number(/NC-VERIFY PASS seed=19 .*round=(\d+)/.exec(l)?.[1] ?? 0)));
  }

  async function startMigration(name: string): Promise<string> {
    const res = await east.api<MigrationBody>("POST", `/v1/vms/${name}/migrations`, {
      targetCluster: "west",
    });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    return res.body.id;
  }

  const daemons = (): WatchedDaemon[] => [
    ["east server", east, "server"],
    ["east agent", east, "e1"],
    ["west server", west, "server"],
    ["west agent", west, "w1"],
  ];
  const printLogs = () => printDaemonWarnings(daemons());

  /** The migration's end; the processes' warnings go to the output when it did not complete. */
  const ended = (id: string) => migrationEnd<MigrationBody>(east, id, 180_000, daemons());

  /**
   * The migration of VM `name` once it is in one of `states` (for a case whose migration
   * request died with the server that took it, so its id is unknown).
   */
  async function migrationOf(name: string, states: string[], timeoutMs: number): Promise<MigrationBody> {
    return waitFor(
      async () =>
        (
          await east.api<{ migrations: MigrationBody[] }>("GET", `/v1/vms/${name}/migrations`)
        ).body.migrations.find((x) => states.includes(x.state)),
      { timeoutMs, what: `the migration of ${name} to be ${states.join(" or ")}` },
    ).catch((err) => {
      printLogs();
      throw err;
    });
  }

  /** Both sides end the hand-off of the VM with id `vmId` aborted. */
  async function abortedOnBothSides(vmId: string, timeoutMs: number): Promise<void> {
    for (const c of [east, west])
      await waitFor(async () => (await handoffState(c, vmId)) === "aborted" || undefined, {
        timeoutMs,
        what: `the hand-off of VM ${vmId} aborted in ${c === east ? "east" : "west"}`,
      }).catch((err) => {
        printLogs();
        throw err;
      });
  }

  /**
   * `c`'s side of the hand-off of the VM with id `vmId`, if it has one. By id: a
   * destination that learnt of the hand-off only from its abort may know no name.
   */
  async function handoffState(c: TestCluster, vmId: string): Promise<string | undefined> {
    const { body } = await c.api<{ handoffs: { vmId: string; state: string }[] }>(
      "GET",
      "/v1/federation/handoffs",
    );
    return body.handoffs.find((h) => h.vmId === vmId)?.state;
  }

  /**
   * The guest runs on `on` only, intact, and both views put it there at `epoch`. `boots`:
   * the boot lines its console may hold (1 for a VM that never left its first host).
   */
  async function settledOn(
    on: "east" | "west",
    name: string,
    vmId: string,
    epoch: number,
    afterRound: number,
    boots = 0,
  ) {
    const c = clusters()[on];
    await c.waitVmState(name, "running", 90_000);
    const round = await waitFor(
      async () => {
        const r = lastRound(await c.console(name, 400));
        return r > afterRound ? r : undefined;
      },
      { timeoutMs: 90_000, what: `${name} to verify its pattern on ${on}` },
    );
    expect(round).toBeGreaterThan(afterRound);
    const lines = await c.console(name, 400);
    expect(
      lines.filter((l) => l.startsWith("NC-READY")),
      "no reboot",
    ).toHaveLength(boots);
    expect(lines.filter((l) => l.includes("NC-VERIFY FAIL"))).toEqual([]);
    await waitFor(
      async () => {
        const q = await qemus(vmId);
        return q[on] === 1 && q[on === "east" ? "west" : "east"] === 0;
      },
      { timeoutMs: 60_000, what: `one QEMU of ${name}, on ${on}` },
    );
    for (const v of [east, west])
      await waitFor(
        async () => {
          const vms = (await v.api<{ vms: FedVm[] }>("GET", "/v1/federation/vms")).body.vms.filter(
            (x) => x.id === vmId,
          );
          return vms.length === 1 && vms[0]!.cluster.name === on && vms[0]!.epoch === epoch;
        },
        { timeoutMs: 60_000, what: `the global view to show ${name} in ${on} at epoch ${epoch}` },
      );
    const other = on === "east" ? west : east;
    await waitFor(async () => (await other.vm(name)) === undefined, {
      timeoutMs: 60_000,
      what: `${name} gone from the other cluster`,
    });
  }

  it("source killed right after the release: nothing runs until it is back, then the hand-off completes", async () => {
    const vm = await createRunning("f-released");
    const dying = await restart("east", "acp.source.released=kill");
    // The restart's own QEMU adoption takes a moment; the VM must run before migrating.
    await east.waitVmState("f-released", "running");
    await startMigration("f-released").catch(() => undefined);
    await dying.exited;
    // The source released the VM: its copy is paused; the destination holds its own,
    // which has not run (its console is still empty) and cannot without the release.
    expect(await qemus(vm.id)).toEqual({ east: 1, west: 1 });
    expect(lastRound(await west.console("f-released", 400))).toBe(0);
    await restart("east");
    await settledOn("west", "f-released", vm.id, 2, vm.round);
    const m = await waitFor(
      async () =>
        (
          await east.api<{ migrations: (MigrationBody & { vm: string })[] }>("GET", "/v1/migrations")
        ).body.migrations.find((x) => x.vm === "f-released" && x.state === "completed"),
      { timeoutMs: 60_000, what: "the migration of f-released to be recorded completed" },
    );
    expect(m.state).toBe("completed");
  });

  it("destination killed after committing the release, before resuming: restarted, it resumes and owns", async () => {
    const vm = await createRunning("f-resuming");
    const dying = await restart("west", "acp.destination.resuming=kill");
    const id = await startMigration("f-resuming");
    await dying.exited;
    // Released by east, owned (but not resumed) by west: no copy runs, east cannot take it back.
    const during = (await east.api<MigrationBody>("GET", `/v1/migrations/${id}`)).body;
    expect(during.state).toBe("switching-over");
    await restart("west");
    expect((await ended(id)).state).toBe("completed");
    await settledOn("west", "f-resuming", vm.id, 2, vm.round);
  });

  it("source killed mid-transfer: restarted, it calls the hand-off off and the VM runs on at the source", async () => {
    // The last test's VM moved to west; this one starts in east again.
    const vm = await createRunning("f-transfer");
    const dying = await restart("east", "acp.source.transferring=kill");
    await east.waitVmState("f-transfer", "running");
    await startMigration("f-transfer").catch(() => undefined);
    await dying.exited;
    await restart("east");
    const m = await migrationOf("f-transfer", ["failed"], 120_000);
    expect(m.stateReason).toMatch(/restart/);
    await settledOn("east", "f-transfer", vm.id, 1, vm.round, 1);
    expect(await handoffState(west, vm.id)).toBe("aborted");
  });

  it("source killed right after proposing: restarted, it carries the hand-off through or calls it off, never half", async () => {
    const vm = await createRunning("f-proposed");
    const dying = await restart("east", "acp.source.preparing=kill");
    await east.waitVmState("f-proposed", "running");
    await startMigration("f-proposed").catch(() => undefined);
    await dying.exited;
    await restart("east");
    const m = await migrationOf("f-proposed", ["completed", "failed"], 180_000);
    console.log(`f-proposed: the migration ended ${m.state}: ${m.stateReason}`);
    if (m.state === "completed") await settledOn("west", "f-proposed", vm.id, 2, vm.round);
    else {
      await settledOn("east", "f-proposed", vm.id, 1, vm.round, 1);
      await abortedOnBothSides(vm.id, 60_000);
    }
  });

  it("destination killed right after owning the VM, before answering: restarted, it answers and the migration completes", async () => {
    const vm = await createRunning("f-owned");
    const dying = await restart("west", "acp.destination.owned=kill");
    const id = await startMigration("f-owned");
    await dying.exited;
    // West's copy runs (it was resumed before `owned` was committed); east waits, released.
    expect(await qemus(vm.id)).toEqual({ east: 1, west: 1 });
    await restart("west");
    expect((await ended(id)).state).toBe("completed");
    await settledOn("west", "f-owned", vm.id, 2, vm.round);
  });

  it("destination killed after recording the prepare: the prepare is repeated and the migration completes", async () => {
    const vm = await createRunning("f-prepared");
    const dying = await restart("west", "acp.destination.prepared=kill");
    const id = await startMigration("f-prepared");
    await dying.exited;
    await restart("west");
    expect((await ended(id)).state).toBe("completed");
    await settledOn("west", "f-prepared", vm.id, 2, vm.round);
  });

  /**
   * After an agent died mid-hand-off either outcome is right, and which one depends on how
   * far the relay got: west owns the VM at epoch 2 (its copy was verified before the
   * kill) or west gave it back and east runs it at epoch 3. Either way one copy runs,
   * intact, and both views agree.
   */
  async function settledEitherWay(name: string, vmId: string, round: number, migrationId: string) {
    const m = await ended(migrationId);
    const on = m.state === "completed" ? "west" : "east";
    console.log(`${name}: the migration ended ${m.state}; the VM runs in ${on}`);
    // A VM that stayed in east keeps the QEMU it booted in, and so its boot line.
    await settledOn(on, name, vmId, on === "west" ? 2 : 3, round, on === "west" ? 0 : 1);
    expect(await handoffState(east, vmId)).toBe(on === "west" ? "completed" : "reclaimed");
    return on;
  }

  it("source agent killed as it is fenced after the release: one copy runs once it is back", async () => {
    const vm = await createRunning("f-fence");
    const dying = await restartAgent("east", "agent.fence=kill");
    await east.waitVmState("f-fence", "running");
    const id = await startMigration("f-fence");
    await dying.exited;
    // Not fenced yet, so the release is not delivered: west has not resumed its copy.
    expect(lastRound(await west.console("f-fence", 400))).toBe(0);
    await restartAgent("east");
    await settledEitherWay("f-fence", vm.id, vm.round, id);
  });

  it("destination agent killed as it is asked to resume: restarted, it resumes a verified copy or gives the VM back", async () => {
    const vm = await createRunning("f-finish");
    const dying = await restartAgent("west", "agent.incoming.finish=kill");
    const id = await startMigration("f-finish");
    await dying.exited;
    await restartAgent("west");
    await settledEitherWay("f-finish", vm.id, vm.round, id);
  });

  it("a destination that does not prepare in time: the authorisation expires, the VM runs on at the source, nothing arrives", async () => {
    const vm = await createRunning("f-expiry");
    await restart("east", undefined, ["--acp-prepare-timeout", "5"]);
    await east.waitVmState("f-expiry", "running");
    // West's server freezes: still a fresh peer to east, but it answers nothing.
    const westPid = west.daemonPid("server")!;
    process.kill(westPid, "SIGSTOP");
    let m: MigrationBody;
    try {
      const id = await startMigration("f-expiry");
      m = await ended(id);
    } finally {
      process.kill(westPid, "SIGCONT");
    }
    expect(m.state).toBe("failed");
    expect(m.stateReason).toMatch(
      /did not prepare a copy within 5 s, so the hand-off's authorisation expired/,
    );
    // Once west answers again it drops whatever it prepared, and both sides agree.
    await abortedOnBothSides(vm.id, 90_000);
    await settledOn("east", "f-expiry", vm.id, 1, vm.round, 1);
    await restart("east");
  });
});
