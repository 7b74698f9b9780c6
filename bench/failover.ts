/**
 * `npm run bench:failover`: control-plane failover (issue 17, item 5; target: a new leader
 * within 10 s). Three `novacron server` replicas (the built command, real processes) on one
 * PostgreSQL database; each round takes the leader down and times, from that moment:
 *
 *   leader       until a survivor holds the lease (its "now the control-plane leader" log line)
 *   controllers  until that survivor has started its controllers ("leader controllers started")
 *   reconcile    until its reconciler finished its first pass ("first reconcile pass done")
 *   api          until GET /v1/control-plane on a survivor names the new leader (polled every 50 ms)
 *
 * Two ways down, `--rounds` each (default 5):
 *   kill-9       SIGKILL: the kernel closes the leader's database session, so a survivor
 *                takes the lease at its next election tick (leadership.ts, "holder-gone")
 *   sigstop      SIGSTOP: the process is frozen with its session open, as a leader cut off
 *                by a partition or stalled; a survivor takes the lease only once its TTL
 *                (5 s) has run out by the database's clock ("expired"); the frozen leader is
 *                then resumed and must step down on its own
 * After each round the old leader is back (restarted, or resumed) as a follower. Times are
 * the servers' log timestamps (this machine's clock, as the bench's), so no poll interval
 * hides in them except in `api`.
 *
 *   --rounds N   rounds per mode (default 5)
 *   --modes LIST kill-9,sigstop (default both)
 *   --json       one JSON object per line: each round, then a summary per mode
 *
 * Needs the PostgreSQL at $NOVACRON_TEST_PG_URL (default postgres://postgres@127.0.0.1:5432/test);
 * a database `nc_failover_bench_<pid>` is created and dropped. Ports 18750-18752.
 */
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import pg from "pg";
import type { ControlPlane } from "../src/api/types/control-plane.js";
import { LocalCluster } from "../src/demo/local-cluster.js";
import { waitFor } from "../src/lib/wait.js";
import { median, printTable } from "./table.js";

const PORTS = [18750, 18751, 18752] as const;
const NAMES = ["server", "server-b", "server-c"] as const;
type Name = (typeof NAMES)[number];
const TARGET_S = 10;
const ADMIN_URL = process.env.NOVACRON_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test";

type Mode = "kill-9" | "sigstop";

interface Round {
  bench: "failover";
  mode: Mode;
  round: number;
  from: Name;
  to: Name;
  reason: string;
  leader_s: number;
  controllers_s: number;
  reconcile_s: number;
  api_s: number;
}

const url = (name: Name) => `https://127.0.0.1:${PORTS[NAMES.indexOf(name)]}`;

/** The first JSON log line of `name` after `after` (ms) whose msg is `msg`. */
function logLine(
  c: LocalCluster,
  name: Name,
  msg: string,
  after: number,
): Record<string, unknown> | undefined {
  for (const line of c.daemonLog(name)) {
    if (!line.startsWith("{")) continue;
    try {
      const j = JSON.parse(line) as Record<string, unknown>;
      if (j.msg === msg && typeof j.time === "number" && j.time >= after) return j;
    } catch {
      // a partial line
    }
  }
  return undefined;
}

async function controlPlane(c: LocalCluster, name: Name): Promise<ControlPlane> {
  c.pointAt(url(name));
  const res = await c.api<ControlPlane>("GET", "/v1/control-plane");
  if (res.status !== 200) throw new Error(`GET /v1/control-plane on ${name}: HTTP ${res.status}`);
  return res.body;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rounds: { type: "string", default: "5" },
      modes: { type: "string", default: "kill-9,sigstop" },
      json: { type: "boolean", default: false },
    },
  });
  const rounds = Number(values.rounds);
  const modes = values.modes.split(",") as Mode[];
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error("--rounds must be a positive whole number");
  for (const m of modes) if (m !== "kill-9" && m !== "sigstop") throw new Error(`--modes: unknown mode ${m}`);
  const json = values.json;

  const dbName = `nc_failover_bench_${process.pid}`;
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${dbName}`);
  const dbUrl = new URL(ADMIN_URL);
  dbUrl.pathname = `/${dbName}`;
  process.env.NOVACRON_LOG_LEVEL = "info";
  // One key for the cluster, as replicas need (docs/operations.md, "Running replicas").
  process.env.NOVACRON_SECRETS_KEY = randomBytes(32).toString("base64");
  const flags = ["--database-url", dbUrl.toString(), "--no-exec-workers"];
  const c = await LocalCluster.create(PORTS[0]);
  const cleanup = async () => {
    await c.destroy().catch(() => {});
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`).catch(() => {});
    await admin.end().catch(() => {});
  };
  const start = (name: Name) =>
    name === "server" ? c.startServer(flags) : c.startReplica(name, PORTS[NAMES.indexOf(name)]!, flags);
  const results: Round[] = [];
  try {
    for (const name of NAMES) await start(name);
    for (const mode of modes) {
      for (let round = 1; round <= rounds; round++) {
        const before = await controlPlane(c, NAMES.find((n) => c.daemonPid(n) !== undefined)!);
        const from = NAMES.find((n) => url(n) === before.leader?.apiUrl);
        if (!from) throw new Error(`no leader before round ${round}: ${JSON.stringify(before.leader)}`);
        const survivors = NAMES.filter((n) => n !== from);
        const pid = c.daemonPid(from)!;
        const t0 = Date.now();
        if (mode === "kill-9") await c.stop(from, "SIGKILL");
        else process.kill(pid, "SIGSTOP");

        const api = await waitFor(
          async () => {
            const cp = await controlPlane(c, survivors[0]!);
            return cp.leader && cp.leader.replica !== before.leader!.replica
              ? { at: Date.now(), cp }
              : undefined;
          },
          { timeoutMs: 60_000, intervalMs: 50, what: "a new leader" },
        );
        const to = NAMES.find((n) => url(n) === api.cp.leader!.apiUrl)!;
        const reconcile = await waitFor(() => logLine(c, to, "first reconcile pass done", t0), {
          timeoutMs: 30_000,
          what: `${to}'s first reconcile pass`,
        });
        const elected = logLine(c, to, "this server is now the control-plane leader", t0)!;
        const controllers = logLine(c, to, "leader controllers started", t0)!;
        const r: Round = {
          bench: "failover",
          mode,
          round,
          from,
          to,
          reason: String(elected.reason),
          leader_s: ((elected.time as number) - t0) / 1000,
          controllers_s: ((controllers.time as number) - t0) / 1000,
          reconcile_s: ((reconcile.time as number) - t0) / 1000,
          api_s: (api.at - t0) / 1000,
        };
        results.push(r);
        if (json) console.log(JSON.stringify(r));
        else
          process.stderr.write(
            `${mode} round ${round}: ${from} -> ${to} in ${r.controllers_s.toFixed(2)} s (${r.reason})\n`,
          );

        // The old leader back as a follower.
        if (mode === "kill-9") await start(from);
        else {
          process.kill(pid, "SIGCONT");
          await waitFor(() => logLine(c, from, "leader controllers stopped", t0), {
            timeoutMs: 30_000,
            what: `${from} to step down after SIGCONT`,
          });
        }
        await waitFor(async () => (await controlPlane(c, to)).replicas.filter((x) => x.live).length >= 3, {
          timeoutMs: 30_000,
          what: "three live replicas again",
        });
      }
    }
  } finally {
    await cleanup();
  }

  const fmt = (x: number | null) => (x === null ? "-" : x.toFixed(2));
  const rows: string[][] = [];
  for (const mode of modes) {
    const rs = results.filter((r) => r.mode === mode);
    const med = (k: keyof Round) => median(rs.map((r) => r[k] as number));
    const max = Math.max(...rs.map((r) => r.controllers_s));
    const summary = {
      bench: "failover-summary",
      mode,
      rounds: rs.length,
      leader_s: med("leader_s"),
      controllers_s: med("controllers_s"),
      reconcile_s: med("reconcile_s"),
      api_s: med("api_s"),
      controllers_max_s: max,
      target_s: TARGET_S,
      met: max <= TARGET_S,
    };
    if (json) console.log(JSON.stringify(summary));
    rows.push([
      mode,
      String(rs.length),
      fmt(summary.leader_s),
      fmt(summary.controllers_s),
      fmt(summary.reconcile_s),
      fmt(summary.api_s),
      fmt(max),
      `≤ ${TARGET_S} s: ${summary.met ? "met" : "MISSED"}`,
    ]);
  }
  if (!json)
    printTable(
      [
        "mode",
        "rounds",
        "leader s (median)",
        "controllers s",
        "first reconcile s",
        "API shows it s",
        "controllers max s",
        "target",
      ],
      rows,
    );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
