// A live migration between two clusters through the whole product (docs/federation.md §10):
// two servers (two databases, two CAs) that peer with each other, one agent each, a busy
// TCG guest. `novacron vm migrate NAME --to-cluster west` moves the running VM over DWCP
// with the hand-off: the guest arrives with its memory and disk intact and without a
// reboot, keeps its UUID, runs once (on west only), and both clusters' global views agree
// that west owns it at epoch 2; east forgot it and its agent holds west's token, so the old
// copy can never run again. Then back to east, at epoch 3, and a third migration cancelled:
// the VM runs on at east and west drops its copy.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../src/lib/wait.js";
import { guestImageManifest, qemuPidsUnder, TestCluster } from "./helpers/cluster.js";

const AGENT_FLAGS = ["--memory", "1024", "--stop-grace", "10"];
const WORKLOAD =
  "nc.pattern_seed=17 nc.pattern_mem_mb=8 nc.pattern_disk_mb=8 nc.verify_every=2 nc.dirty_mb=32 nc.dirty_rate_mbps=2";

interface VmBody {
  id: string;
  state: string;
  host: string;
}
interface FedVm {
  id: string;
  name: string;
  cluster: { name: string };
  epoch: number;
  state: string;
}
interface HandoffBody {
  id: string;
  side: string;
  state: string;
  settled: boolean;
  fromEpoch: number;
}

describe("live migration between two clusters", { timeout: 300_000 }, () => {
  let east!: TestCluster;
  let west!: TestCluster;

  beforeAll(async () => {
    const manifest = await guestImageManifest();
    [east, west] = await Promise.all([TestCluster.create(17750), TestCluster.create(17755)]);
    await Promise.all([
      east.startServer(["--cluster-name", "east", "--heartbeat-timeout", "6"]),
      west.startServer(["--cluster-name", "west", "--heartbeat-timeout", "6"]),
    ]);
    await Promise.all([east.startAgent("e1", 17851, AGENT_FLAGS), west.startAgent("w1", 17856, AGENT_FLAGS)]);
    for (const c of [east, west]) {
      const res = await c.cli(["image", "import", "guest", "--manifest", manifest]);
      expect(res.code, res.stderr).toBe(0);
    }
    const token = await east.cli(["cluster", "peer", "token", "--json"]);
    expect(token.code, token.stderr).toBe(0);
    const added = await west.cli(["cluster", "peer", "add", JSON.parse(token.stdout).token]);
    expect(added.code, added.stderr).toBe(0);
  }, 240_000);

  afterAll(async () => {
    await Promise.all([east?.destroy(), west?.destroy()]);
  });

  const qemus = (c: TestCluster, agent: string, vmId: string) =>
    qemuPidsUnder(`${c.dir}/agents/${agent}/vms/${vmId}`);
  const handoffs = async (c: TestCluster) =>
    (await c.api<{ handoffs: HandoffBody[] }>("GET", "/v1/federation/handoffs")).body.handoffs;
  const view = async (c: TestCluster, name: string) =>
    (await c.api<{ vms: FedVm[] }>("GET", "/v1/federation/vms")).body.vms.filter((v) => v.name === name);

  /** The guest printed a newer verified round on `c` and neither rebooted nor failed a check. */
  async function intactOn(c: TestCluster, name: string, afterRound: number): Promise<number> {
    const rounds = (lines: string[]) =>
      lines.map((l) => Number(/NC-VERIFY PASS seed=17 .*round=(\d+)/.exec(l)?.[1] ?? 0));
    const round = await waitFor(
      async () => {
        const r = Math.max(0, ...rounds(await c.console(name, 400)));
        return r > afterRound ? r : undefined;
      },
      { timeoutMs: 90_000, what: `${name} to verify its pattern again` },
    );
    const lines = await c.console(name, 400);
    expect(
      lines.filter((l) => l.startsWith("NC-READY")),
      "no boot on arrival",
    ).toEqual([]);
    expect(lines.filter((l) => l.includes("NC-VERIFY FAIL"))).toEqual([]);
    return round;
  }

  /** `host`: the host there, named with --host (else the destination's placement picks). */
  async function migrate(from: TestCluster, to: string, name: string, host?: string): Promise<void> {
    const res = await from.cli([
      "vm",
      "migrate",
      name,
      "--to-cluster",
      to,
      ...(host ? ["--host", host] : []),
      "--follow",
    ]);
    expect(res.code, `${res.stdout}\n${res.stderr}`).toBe(0);
    expect(res.stdout).toMatch(
      new RegExp(`Migrated ${name} from \\S+ to ${host ?? "\\S+"} in cluster ${to} over dwcp`),
    );
  }

  it("moves a running VM to the other cluster with its memory, disk, UUID and a new owner epoch", async () => {
    const created = await east.api<VmBody>("POST", "/v1/vms", {
      name: "mover",
      image: "guest",
      memoryMiB: 256,
      kernelArgs: WORKLOAD,
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    await east.waitVmState("mover", "running");
    await east.waitConsole("mover", /NC-VERIFY PASS seed=17 .*round=1/);
    const id = created.body.id;
    const round = Math.max(
      ...(await east.console("mover", 400)).map((l) =>
        Number(/NC-VERIFY PASS seed=17 .*round=(\d+)/.exec(l)?.[1] ?? 0),
      ),
    );

    await migrate(east, "west", "mover");
    // The guest's whole pause is measured across clusters too: west's `owned` says when
    // its copy ran again, east's record holds when the source stopped.
    const done = (
      await east.api<{
        migrations: { vm: string; result: { downtimeMs?: number; guestPauseMs?: number } }[];
      }>("GET", "/v1/migrations")
    ).body.migrations.find((m) => m.vm === "mover");
    expect(done?.result.guestPauseMs).toBeGreaterThanOrEqual(
      done?.result.downtimeMs ?? Number.POSITIVE_INFINITY,
    );

    const arrived = (await west.waitVmState("mover", "running", 60_000)) as unknown as VmBody;
    expect(arrived.id, "the VM keeps its UUID").toBe(id);
    expect(arrived.host).toBe("w1");
    await intactOn(west, "mover", round);
    // One copy, on west; east forgot the VM once its copy was gone.
    await waitFor(async () => (await east.vm("mover")) === undefined, {
      timeoutMs: 30_000,
      what: "east to forget mover",
    });
    expect(await qemus(east, "e1", id)).toEqual([]);
    expect(await qemus(west, "w1", id)).toHaveLength(1);
    // East's agent holds west's token: the old copy can never be started there again.
    const fence = JSON.parse(await readFile(path.join(east.agentDir("e1"), "fences", `${id}.json`), "utf8"));
    expect(fence).toMatchObject({ owner: expect.any(String), epoch: 2 });
    // Both views: west owns it at epoch 2.
    for (const c of [east, west])
      await waitFor(
        async () => {
          const v = await view(c, "mover");
          return v.length === 1 && v[0]!.cluster.name === "west" && v[0]!.epoch === 2 ? v : undefined;
        },
        { timeoutMs: 30_000, what: "the global view to show mover in west at epoch 2" },
      );
    await waitFor(async () => (await handoffs(east))[0]?.settled, {
      timeoutMs: 30_000,
      what: "east's hand-off to settle",
    });
    expect((await handoffs(east))[0]).toMatchObject({ side: "source", state: "completed", fromEpoch: 1 });
    expect((await handoffs(west))[0]).toMatchObject({ side: "destination", state: "owned", fromEpoch: 1 });
  });

  it("moves it back, at epoch 3", async () => {
    const before = Math.max(
      ...(await west.console("mover", 400)).map((l) =>
        Number(/NC-VERIFY PASS seed=17 .*round=(\d+)/.exec(l)?.[1] ?? 0),
      ),
    );
    await migrate(west, "east", "mover", "e1");
    const back = (await east.waitVmState("mover", "running", 60_000)) as unknown as VmBody;
    await intactOn(east, "mover", before);
    await waitFor(async () => (await west.vm("mover")) === undefined, {
      timeoutMs: 30_000,
      what: "west to forget mover",
    });
    expect(await qemus(west, "w1", back.id)).toEqual([]);
    expect(await qemus(east, "e1", back.id)).toHaveLength(1);
    for (const c of [east, west])
      await waitFor(
        async () => {
          const v = await view(c, "mover");
          return v.length === 1 && v[0]!.cluster.name === "east" && v[0]!.epoch === 3 ? v : undefined;
        },
        { timeoutMs: 30_000, what: "the global view to show mover in east at epoch 3" },
      );
  });

  it("cancels a migration to another cluster: the VM runs on at the source and the destination drops its copy", async () => {
    const vm = (await east.vm("mover")) as unknown as VmBody;
    const before = Math.max(
      ...(await east.console("mover", 400)).map((l) =>
        Number(/NC-VERIFY PASS seed=17 .*round=(\d+)/.exec(l)?.[1] ?? 0),
      ),
    );
    const started = await east.api<{ id: string }>("POST", "/v1/vms/mover/migrations", {
      targetCluster: "west",
    });
    expect(started.status, JSON.stringify(started.body)).toBe(202);
    const cancelled = await east.api("DELETE", `/v1/migrations/${started.body.id}`);
    expect(cancelled.status, JSON.stringify(cancelled.body)).toBe(202);
    const m = await east.waitMigrationEnd<{ state: string; rollback: string }>(started.body.id, 120_000);
    expect(m.state).toBe("cancelled");
    await east.waitVmState("mover", "running", 60_000);
    // It never stopped: the guest verified on, and no second QEMU anywhere.
    await intactOn(east, "mover", before);
    expect(await qemus(east, "e1", vm.id)).toHaveLength(1);
    await waitFor(async () => (await qemus(west, "w1", vm.id)).length === 0 || undefined, {
      timeoutMs: 60_000,
      what: "west to drop its copy",
    });
    for (const c of [east, west])
      await waitFor(
        async () => {
          const h = (await handoffs(c)).find((x) => x.id === started.body.id);
          // West may never have heard of it, when the cancel came before the prepare.
          return (h ? h.state === "aborted" && h.settled : c === west) || undefined;
        },
        { timeoutMs: 60_000, what: "the hand-off aborted and settled" },
      );
    expect(await west.vm("mover")).toBeUndefined();
    for (const c of [east, west]) {
      const v = await view(c, "mover");
      expect(v.map((x) => [x.cluster.name, x.epoch])).toEqual([["east", 3]]);
    }
  });
});
