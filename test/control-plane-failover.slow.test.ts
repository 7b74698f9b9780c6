// Control-plane failover with real processes: three `novacron server` replicas on one
// PostgreSQL elect one leader; `kill -9` of the leader hands leadership to another within
// a bound while the API keeps answering on the others, the agents (given every replica's
// URL) keep heartbeating, a change made through a follower is acted on by the leader, and
// at no time do two replicas run the controllers. Replicas with another CA or secrets key
// are refused at start.
import { randomBytes } from "node:crypto";
import { copyFile, mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ControlPlane } from "../src/api/types/control-plane.js";
import { waitFor } from "../src/lib/wait.js";
import { TestCluster } from "./helpers/cluster.js";
import { createPostgresDatabase, type TestDatabase } from "./helpers/databases.js";
import { fetchEvents, nextLiveEvent } from "./helpers/events.js";

const PORTS = { a: 18740, b: 18741, c: 18742, h1: 18743, h2: 18744, refused: 18745 };
const url = (port: number) => `https://127.0.0.1:${port}`;
const REPLICAS = { server: PORTS.a, "server-b": PORTS.b, "server-c": PORTS.c } as const;
type ReplicaName = keyof typeof REPLICAS;

interface HostBody {
  name: string;
  liveness: string;
  lastHeartbeatAt: string;
}

describe("control-plane failover", { timeout: 180_000 }, () => {
  let db: TestDatabase;
  let c: TestCluster;
  const serverFlags = () => ["--database-url", db.url!, "--heartbeat-timeout", "6"];
  const allUrls = Object.values(REPLICAS).map(url).join(",");

  beforeAll(async () => {
    // Info lines: the replicas' "leader controllers started" is what this suite counts.
    process.env.NOVACRON_LOG_LEVEL = "info";
    db = await createPostgresDatabase();
    c = await TestCluster.create(PORTS.a);
    await c.startServer(serverFlags());
    await c.startReplica("server-b", PORTS.b, serverFlags());
    await c.startReplica("server-c", PORTS.c, serverFlags());
    // The agents know every replica, the first first.
    await c.startAgent("h1", PORTS.h1, ["--memory", "512"], { serverUrl: allUrls });
    await c.startAgent("h2", PORTS.h2, ["--memory", "512"], { serverUrl: allUrls });
  }, 180_000);

  afterAll(async () => {
    await c?.destroy();
    await db?.drop();
  });

  /** GET /v1/control-plane from one replica. */
  async function controlPlane(name: ReplicaName): Promise<ControlPlane> {
    c.pointAt(url(REPLICAS[name]));
    const res = await c.api<ControlPlane>("GET", "/v1/control-plane");
    expect(res.status).toBe(200);
    return res.body;
  }

  /** The replicas that say, in their metrics, that they run the controllers now. */
  async function leadersByMetrics(names: readonly ReplicaName[]): Promise<ReplicaName[]> {
    const out: ReplicaName[] = [];
    for (const name of names) {
      c.pointAt(url(REPLICAS[name]));
      const res = await c.fetch("/metrics", { headers: { authorization: `Bearer ${c.adminToken}` } });
      const text = await res.text();
      if (/^novacron_control_plane_leader 1$/m.test(text)) out.push(name);
    }
    return out;
  }

  /** How many times replica `name` logged that it started the controllers. */
  const controllerStarts = (name: string) =>
    c.daemonLog(name).filter((l) => l.includes("leader controllers started")).length;

  it("elects one leader that every replica names, and only it runs the controllers", async () => {
    const views = await Promise.all(
      (Object.keys(REPLICAS) as ReplicaName[]).map(async (n) => ({ n, cp: await controlPlane(n) })),
    );
    const leader = views[0]!.cp.leader;
    expect(leader).not.toBeNull();
    for (const { cp } of views) {
      expect(cp.leader?.replica).toBe(leader!.replica);
      expect(cp.replicas.filter((r) => r.live)).toHaveLength(3);
      expect(cp.replicas.filter((r) => r.leader)).toHaveLength(1);
    }
    // The first server started first, on an empty lease: it leads.
    expect(leader!.apiUrl).toBe(url(PORTS.a));
    expect(await leadersByMetrics(["server", "server-b", "server-c"])).toEqual(["server"]);
    const cli = await c.cli(["cluster", "leader", "--json"]);
    expect(cli.code, cli.stderr).toBe(0);
    expect((JSON.parse(cli.stdout) as ControlPlane).leader?.replica).toBe(leader!.replica);
  });

  it("hands leadership over when the leader is killed with SIGKILL; the API and the agents carry on", async () => {
    const before = await controlPlane("server-b");
    const killedAt = new Date();
    await c.stop("server", "SIGKILL");

    // Another replica leads, at the next epoch, within a bound (the benchmark measures how fast).
    const after = await waitFor(
      async () => {
        const cp = await controlPlane("server-b");
        return cp.leader && cp.leader.replica !== before.leader!.replica ? cp : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 200, what: "another replica to lead" },
    );
    expect(after.epoch).toBe(before.epoch + 1);
    expect([url(PORTS.b), url(PORTS.c)]).toContain(after.leader!.apiUrl);
    const newLeader: ReplicaName = after.leader!.apiUrl === url(PORTS.b) ? "server-b" : "server-c";
    await waitFor(async () => controllerStarts(newLeader) === 1, {
      timeoutMs: 10_000,
      what: `${newLeader} to start its controllers`,
    });
    // Exactly one replica runs the controllers; the other never started them.
    expect(await leadersByMetrics(["server-b", "server-c"])).toEqual([newLeader]);
    expect(controllerStarts(newLeader === "server-b" ? "server-c" : "server-b")).toBe(0);

    // The event says who took over from whom.
    c.pointAt(url(REPLICAS[newLeader]));
    const changes = (await fetchEvents(c, 0)).filter((e) => e.type === "control-plane.leader");
    expect(changes.at(-1)?.data).toMatchObject({ epoch: after.epoch, previous: before.leader!.replica });

    // Both agents' first URL is the dead replica: they moved to the next and keep heartbeating,
    // so the new leader's liveness monitor (6 s timeout) never marks them dead.
    for (const name of ["h1", "h2"]) {
      await waitFor(
        async () => {
          const h = (await c.api<HostBody>("GET", `/v1/hosts/${name}`)).body;
          return new Date(h.lastHeartbeatAt) > killedAt && h.liveness === "alive";
        },
        { timeoutMs: 20_000, intervalMs: 250, what: `${name} to heartbeat a live replica` },
      );
    }
    await waitFor(async () => Date.now() - killedAt.getTime() > 8000, { timeoutMs: 15_000, intervalMs: 500 });
    const hosts = (await c.api<{ hosts: HostBody[] }>("GET", "/v1/hosts")).body.hosts;
    expect(hosts.map((h) => [h.name, h.liveness]).sort()).toEqual([
      ["h1", "alive"],
      ["h2", "alive"],
    ]);
  });

  it("acts on a change made through a follower, whose event stream shows the leader's events live", async () => {
    const cp = await controlPlane("server-b");
    const follower: ReplicaName = cp.leader!.apiUrl === url(PORTS.b) ? "server-c" : "server-b";
    c.pointAt(url(REPLICAS[follower]));
    // h2 holds no VM: the leader's drain executor finishes the drain the follower recorded,
    // and the follower's SSE stream carries the leader's event (relayed, not on reconnect).
    const drained = await nextLiveEvent(
      c,
      (e) => e.type === "drain.state" && e.data.to === "drained",
      async () => {
        const started = await c.api<{ id: string; state: string }>("POST", "/v1/hosts/h2/drain", {});
        expect(started.status, JSON.stringify(started.body)).toBe(202);
      },
    );
    expect(drained.data.to).toBe("drained");
    expect((await c.api<{ state: string }>("GET", "/v1/hosts/h2/drain")).body.state).toBe("drained");
    expect((await c.api("POST", "/v1/hosts/h2/uncordon")).status).toBe(200);
  });

  it("takes the killed server back as a follower", async () => {
    const leaderBefore = (await controlPlane("server-b")).leader!;
    await c.startServer(serverFlags());
    const cp = await waitFor(
      async () => {
        const view = await controlPlane("server");
        return view.replicas.filter((r) => r.live).length >= 3 ? view : undefined;
      },
      { timeoutMs: 20_000, what: "the restarted server to show up" },
    );
    expect(cp.leader?.replica).toBe(leaderBefore.replica);
    expect(cp.self).not.toBe(leaderBefore.replica);
    expect(controllerStarts("server")).toBe(0);
  });

  it("refuses a replica whose CA or secrets key differs from the database's, saying how to fix it", async () => {
    const dir = path.join(c.dir, "refused");
    const run = () =>
      c.cli(
        [
          "server",
          "--data-dir",
          dir,
          "--listen",
          `127.0.0.1:${PORTS.refused}`,
          "--federation-port",
          "0",
          ...serverFlags(),
        ],
        60_000,
      );
    // Its own new CA.
    const wrongCa = await run();
    expect(wrongCa.code, wrongCa.stderr).toBe(2);
    expect(wrongCa.stderr).toContain("A second server (replica) must use the same CA");
    expect(wrongCa.stderr).toContain("NOVA_CONFIG");
    // The cluster's CA, but a secrets key of its own.
    await mkdir(path.join(dir, "pki"), { recursive: true });
    for (const f of ["ca.crt", "ca.key"])
      await copyFile(path.join(c.dir, "server", "pki", f), path.join(dir, "pki", f));
    await writeFile(path.join(dir, "secrets.key"), `${randomBytes(32).toString("base64")}\n`, {
      mode: 0o600,
    });
    const wrongKey = await run();
    expect(wrongKey.code, wrongKey.stderr).toBe(2);
    expect(wrongKey.stderr).toContain("sealed with another secrets key");
    expect(wrongKey.stderr).toContain("NOVACRON_SECRETS_KEY");
  });
});
