/**
 * `npm run bench:queue`: NovaCron's job queue against pg-boss on the same PostgreSQL in
 * the same run (issue: execution system). Each measurement uses a fresh database.
 *
 *   throughput  N no-op jobs enqueued up front, then W workers in each of P processes
 *               (bench/queue-worker.ts) drain them; jobs_per_s = N / time to drain
 *   latency     a light steady load (50 jobs/s for 6 s) on 4 idle workers in this process:
 *               enqueue-to-start time per job
 *   recovery    a process holding 16 jobs is killed with SIGKILL while a second process
 *               waits; recovery_s = time from the kill until all 16 completed elsewhere
 *   pglite      NovaCron's throughput on embedded PGlite (in-process; pg-boss cannot run there)
 *
 *   --url URL        admin URL (default $NOVACRON_TEST_PG_URL or postgres://postgres@127.0.0.1:5432/test)
 *   --jobs N         jobs per throughput run (default 100000)
 *   --workers LIST   default 1,4,16;  --processes LIST  default 1,2
 *   --systems LIST   default novacron,pg-boss
 *   --repeat N       repeat each measurement, report the median (default 1)
 *   --pgboss-batch N pg-boss batchSize per worker in the throughput runs (default 100: pg-boss 10
 *                    sleeps its polling interval, >= 0.5 s, after every fetch, so batchSize 1
 *                    caps it at 2 jobs/s per worker; 100 is its best case for no-op jobs)
 *   --only LIST      subset of throughput,latency,recovery,pglite
 *   --json           one JSON object per line instead of the table
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { openDb } from "../src/cluster/store/db.js";
import { enqueueJobs } from "../src/cluster/store/executions-queue.js";
import { loadMigrations, migrate } from "../src/cluster/store/migrate.js";
import { WakeChannel } from "../src/exec/notify.js";
import { WorkerPool } from "../src/exec/pool.js";

interface Row {
  system: string;
  scenario: string;
  workers: number;
  processes: number;
  jobs: number;
  jobs_per_s: number | null;
  latency_p50_ms: number | null;
  latency_p99_ms: number | null;
  recovery_s: number | null;
  runs: number;
}

const WORKER = fileURLToPath(new URL("./queue-worker.js", import.meta.url));
const QUEUE = "bench";
// The benchmark build (.cache/bench) has no copy of the SQL files: read them from src/.
const SQL_DIR = fileURLToPath(new URL("../../../src/cluster/sql/", import.meta.url));

function parseArgs(argv: string[]) {
  const o = {
    url: process.env.NOVACRON_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test",
    jobs: 100_000,
    workers: [1, 4, 16],
    processes: [1, 2],
    systems: ["novacron", "pg-boss"],
    repeat: 1,
    pgbossBatch: 100,
    only: ["throughput", "latency", "recovery", "pglite"],
    json: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = () => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${a} needs a value`);
      return x;
    };
    const list = (s: string) => s.split(",").filter(Boolean);
    if (a === "--url") o.url = v();
    else if (a === "--jobs") o.jobs = Number(v());
    else if (a === "--workers") o.workers = list(v()).map(Number);
    else if (a === "--processes") o.processes = list(v()).map(Number);
    else if (a === "--systems") o.systems = list(v());
    else if (a === "--repeat") o.repeat = Number(v());
    else if (a === "--pgboss-batch") o.pgbossBatch = Number(v());
    else if (a === "--only") o.only = list(v());
    else if (a === "--json") o.json = true;
    else throw new Error(`Unknown option ${a} (see the header of bench/queue.ts)`);
  }
  return o;
}

/** A fresh database on the server; dropped by the returned function. */
async function freshDatabase(adminUrl: string): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `novacron_bench_${randomBytes(5).toString("hex")}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    drop: async () => {
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

interface Child {
  proc: ChildProcess;
  lines: string[];
  exited: Promise<void>;
}

function spawnWorker(system: string, url: string, workers: number, extra: string[] = []): Child {
  const proc = spawn(process.execPath, [WORKER, system, url, QUEUE, String(workers), ...extra], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  const lines: string[] = [];
  proc.stdout!.on("data", (c: Buffer) => lines.push(...c.toString().split("\n").filter(Boolean)));
  const exited = new Promise<void>((r) => proc.on("exit", () => r()));
  return { proc, lines, exited };
}

async function until(check: () => Promise<boolean> | boolean, timeoutMs: number, what: string, everyMs = 20) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

async function stopChild(c: Child): Promise<void> {
  c.proc.kill("SIGTERM");
  await Promise.race([c.exited, new Promise((r) => setTimeout(r, 5000))]);
  c.proc.kill("SIGKILL");
  await c.exited;
}

/** Whether any job is unfinished. EXISTS, not count(*): counting a 100k-row queue every
 * 50 ms would load the database more than the workers do. */
async function unfinished(client: pg.Client, system: string): Promise<boolean> {
  const sql =
    system === "pg-boss"
      ? "SELECT EXISTS (SELECT 1 FROM pgboss.job WHERE name = $1 AND state < 'completed') AS x"
      : `SELECT EXISTS (SELECT 1 FROM exec_jobs WHERE state = 'queued' AND queue = $1)
           OR EXISTS (SELECT 1 FROM exec_jobs WHERE state = 'running' AND queue = $1) AS x`;
  return (await client.query<{ x: boolean }>(sql, [QUEUE])).rows[0]!.x;
}

async function prepare(system: string, url: string): Promise<void> {
  if (system === "pg-boss") {
    const { default: PgBoss } = await import("pg-boss");
    const boss = new PgBoss({ connectionString: url, supervise: false, schedule: false });
    boss.on("error", () => {});
    await boss.start();
    await boss.createQueue(QUEUE);
    await boss.stop({ graceful: false, wait: true });
  } else {
    const db = await openDb({ url });
    await migrate(db, await loadMigrations(SQL_DIR));
    await db.close();
  }
}

async function enqueueMany(system: string, url: string, n: number, extra: Record<string, unknown> = {}) {
  const chunk = 5000;
  if (system === "pg-boss") {
    const { default: PgBoss } = await import("pg-boss");
    const boss = new PgBoss({ connectionString: url, supervise: false, schedule: false });
    boss.on("error", () => {});
    await boss.start();
    for (let i = 0; i < n; i += chunk) {
      await boss.insert(
        Array.from({ length: Math.min(chunk, n - i) }, () => ({ name: QUEUE, data: {}, ...extra })),
      );
    }
    await boss.stop({ graceful: false, wait: true });
  } else {
    const db = await openDb({ url });
    for (let i = 0; i < n; i += chunk)
      await enqueueJobs(
        db,
        QUEUE,
        Array.from({ length: Math.min(chunk, n - i) }, () => ({ ...extra })),
      );
    await db.close();
  }
}

async function throughput(
  adminUrl: string,
  system: string,
  workers: number,
  processes: number,
  jobs: number,
  pgbossBatch: number,
) {
  const db = await freshDatabase(adminUrl);
  const children: Child[] = [];
  try {
    await prepare(system, db.url);
    await enqueueMany(system, db.url, jobs);
    for (let p = 0; p < processes; p++)
      children.push(spawnWorker(system, db.url, workers, ["--pgboss-batch", String(pgbossBatch)]));
    await until(() => children.every((c) => c.lines.includes("ready")), 60_000, "workers to connect", 50);
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    const start = performance.now();
    for (const c of children) c.proc.stdin!.write("go\n");
    await until(async () => !(await unfinished(client, system)), 3_600_000, "the queue to drain", 50);
    const seconds = (performance.now() - start) / 1000;
    await client.end();
    return jobs / seconds;
  } finally {
    for (const c of children) await stopChild(c);
    await db.drop();
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function latency(adminUrl: string, system: string): Promise<{ p50: number; p99: number }> {
  const db = await freshDatabase(adminUrl);
  const samples: number[] = [];
  const total = 300;
  try {
    await prepare(system, db.url);
    const record = (payload: { t?: number }) => {
      if (typeof payload.t === "number") samples.push(performance.timeOrigin + performance.now() - payload.t);
    };
    let stop: () => Promise<void>;
    let send: (t: number) => Promise<void>;
    if (system === "pg-boss") {
      const { default: PgBoss } = await import("pg-boss");
      const boss = new PgBoss({ connectionString: db.url, supervise: false, schedule: false });
      boss.on("error", () => {});
      await boss.start();
      for (let i = 0; i < 4; i++)
        await boss.work<{ t: number }>(QUEUE, { batchSize: 1, pollingIntervalSeconds: 0.5 }, async ([job]) =>
          record(job!.data),
        );
      // A separate producer, as with NovaCron below: a send on the workers' own instance
      // would wake them in-process, which another process (the API server) cannot do.
      const producer = new PgBoss({ connectionString: db.url, supervise: false, schedule: false });
      producer.on("error", () => {});
      await producer.start();
      send = async (t) => {
        await producer.send(QUEUE, { t });
      };
      stop = async () => {
        await boss.stop({ graceful: false, wait: true });
        await producer.stop({ graceful: false, wait: true });
      };
    } else {
      const workerDb = await openDb({ url: db.url });
      const producerDb = await openDb({ url: db.url });
      // The producer never signals locally: workers learn about jobs only through NOTIFY.
      const wake = new WakeChannel(db.url);
      await wake.start();
      const pool = new WorkerPool({
        db: workerDb,
        handlers: { [QUEUE]: async (job) => record(job.payload as { t: number }) },
        pool: { minWorkers: 4, maxWorkers: 4 },
        wake,
      });
      pool.start();
      send = async (t) => {
        await enqueueJobs(producerDb, QUEUE, [{ payload: { t } }]);
      };
      stop = async () => {
        await pool.stop();
        await wake.close();
        await workerDb.close();
        await producerDb.close();
      };
    }
    await new Promise((r) => setTimeout(r, 1000)); // idle workers: the light-load case
    for (let i = 0; i < total; i++) {
      await send(performance.timeOrigin + performance.now());
      await new Promise((r) => setTimeout(r, 20));
    }
    await until(() => samples.length >= total, 300_000, "all latency jobs to start");
    await stop();
    samples.sort((a, b) => a - b);
    return { p50: percentile(samples, 50), p99: percentile(samples, 99) };
  } finally {
    await db.drop();
  }
}

async function recovery(adminUrl: string, system: string): Promise<number> {
  const db = await freshDatabase(adminUrl);
  const n = 16;
  let victim: Child | undefined;
  let survivor: Child | undefined;
  try {
    await prepare(system, db.url);
    // NovaCron: the fast SLA class's 5 s lease. pg-boss: its shortest practical expiry
    // (5 s) with maintenance every second and an immediate retry — its best case.
    await enqueueMany(
      system,
      db.url,
      n,
      system === "pg-boss" ? { expireInSeconds: 5, retryLimit: 3, retryDelay: 0 } : { leaseMs: 5000 },
    );
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    const active =
      system === "pg-boss"
        ? "SELECT count(*)::int AS n FROM pgboss.job WHERE name = $1 AND state = 'active'"
        : "SELECT count(*)::int AS n FROM exec_jobs WHERE queue = $1 AND state = 'running'";
    victim = spawnWorker(system, db.url, n, ["--hang"]);
    await until(() => victim!.lines.includes("ready"), 60_000, "the victim to connect", 50);
    victim.proc.stdin!.write("go\n");
    await until(
      async () => (await client.query<{ n: number }>(active, [QUEUE])).rows[0]!.n === n,
      60_000,
      "the victim to hold every job",
      50,
    );
    survivor = spawnWorker(system, db.url, n);
    await until(() => survivor!.lines.includes("ready"), 60_000, "the survivor to connect", 50);
    survivor.proc.stdin!.write("go\n");
    await until(() => survivor!.lines.includes("working"), 60_000, "the survivor to start", 20);
    const t0 = performance.now();
    victim.proc.kill("SIGKILL");
    await victim.exited;
    await until(async () => !(await unfinished(client, system)), 600_000, "the jobs to be recovered", 50);
    const seconds = (performance.now() - t0) / 1000;
    await client.end();
    return seconds;
  } finally {
    if (victim) await stopChild(victim);
    if (survivor) await stopChild(survivor);
    await db.drop();
  }
}

async function pgliteThroughput(workers: number, jobs: number): Promise<number> {
  const db = await openDb({ memory: true });
  await migrate(db, await loadMigrations(SQL_DIR));
  const chunk = 5000;
  for (let i = 0; i < jobs; i += chunk)
    await enqueueJobs(
      db,
      QUEUE,
      Array.from({ length: Math.min(chunk, jobs - i) }, () => ({})),
    );
  let done = 0;
  const pool = new WorkerPool({
    db,
    handlers: {
      [QUEUE]: async () => {
        done++;
      },
    },
    pool: { minWorkers: workers, maxWorkers: workers },
  });
  const start = performance.now();
  pool.start();
  await until(
    async () =>
      done >= jobs &&
      (await db.query<{ n: number }>("SELECT count(*)::int AS n FROM exec_jobs WHERE state <> 'completed'"))
        .rows[0]!.n === 0,
    3_600_000,
    "PGlite to drain",
    50,
  );
  const seconds = (performance.now() - start) / 1000;
  await pool.stop();
  await db.close();
  return jobs / seconds;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const round = (x: number | null, d = 1) => (x === null ? null : Math.round(x * 10 ** d) / 10 ** d);

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const rows: Row[] = [];
  const emit = (r: Row) => {
    rows.push(r);
    if (o.json) process.stdout.write(`${JSON.stringify(r)}\n`);
    else process.stderr.write(`  ${r.system} ${r.scenario} w=${r.workers} p=${r.processes} done\n`);
  };
  const base = { jobs_per_s: null, latency_p50_ms: null, latency_p99_ms: null, recovery_s: null };
  const times = async <T>(fn: () => Promise<T>) => {
    const out: T[] = [];
    for (let i = 0; i < o.repeat; i++) out.push(await fn());
    return out;
  };
  if (o.only.includes("throughput")) {
    for (const workers of o.workers)
      for (const processes of o.processes)
        for (const system of o.systems) {
          const runs = await times(() =>
            throughput(o.url, system, workers, processes, o.jobs, o.pgbossBatch),
          );
          emit({
            ...base,
            system,
            scenario: "throughput",
            workers,
            processes,
            jobs: o.jobs,
            jobs_per_s: round(median(runs)),
            runs: runs.length,
          });
        }
  }
  if (o.only.includes("latency")) {
    for (const system of o.systems) {
      const runs = await times(() => latency(o.url, system));
      emit({
        ...base,
        system,
        scenario: "latency",
        workers: 4,
        processes: 1,
        jobs: 300,
        latency_p50_ms: round(median(runs.map((r) => r.p50)), 2),
        latency_p99_ms: round(median(runs.map((r) => r.p99)), 2),
        runs: runs.length,
      });
    }
  }
  if (o.only.includes("recovery")) {
    for (const system of o.systems) {
      const runs = await times(() => recovery(o.url, system));
      emit({
        ...base,
        system,
        scenario: "recovery",
        workers: 16,
        processes: 2,
        jobs: 16,
        recovery_s: round(median(runs), 2),
        runs: runs.length,
      });
    }
  }
  if (o.only.includes("pglite")) {
    for (const workers of o.workers) {
      const runs = await times(() => pgliteThroughput(workers, o.jobs));
      emit({
        ...base,
        system: "novacron-pglite",
        scenario: "throughput",
        workers,
        processes: 1,
        jobs: o.jobs,
        jobs_per_s: round(median(runs)),
        runs: runs.length,
      });
    }
  }
  if (!o.json) {
    const cols = [
      "system",
      "scenario",
      "workers",
      "processes",
      "jobs",
      "jobs_per_s",
      "latency_p50_ms",
      "latency_p99_ms",
      "recovery_s",
      "runs",
    ] as const;
    const cells = [
      cols as readonly string[],
      ...rows.map((r) => cols.map((c) => (r[c] === null ? "-" : String(r[c])))),
    ];
    const widths = cols.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
    for (const r of cells) process.stdout.write(`${r.map((c, i) => c.padEnd(widths[i]!)).join("  ")}\n`);
  }
}

await main();
