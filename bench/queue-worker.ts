/**
 * A benchmark worker process for `npm run bench:queue` (bench/queue.ts): runs NovaCron's
 * worker pool or pg-boss workers on a queue of no-op jobs. Prints "ready" once connected,
 * starts working on "go" (stdin), exits on SIGTERM. `--hang` makes every job never finish
 * (the process holding jobs that the recovery measurement kills).
 *
 *   node queue-worker.js novacron|pg-boss <database url> <queue> <workers> [--hang] [--pgboss-batch N]
 */
import { createInterface } from "node:readline";
import { openDb } from "../src/cluster/store/db.js";
import { WakeChannel } from "../src/exec/notify.js";
import { WorkerPool } from "../src/exec/pool.js";

const [system, url, queue, workersArg, ...rest] = process.argv.slice(2);
const workers = Number(workersArg);
const hang = rest.includes("--hang");
const batchIdx = rest.indexOf("--pgboss-batch");
const pgbossBatch = batchIdx >= 0 ? Number(rest[batchIdx + 1]) : 1;
const never = () => new Promise<void>(() => {});

async function startNovacron(): Promise<() => Promise<void>> {
  const db = await openDb({ url: url! });
  const wake = new WakeChannel(url);
  await wake.start();
  const pool = new WorkerPool({
    db,
    handlers: { [queue!]: async () => (hang ? never() : undefined) },
    pool: { minWorkers: workers, maxWorkers: workers, pollIntervalMs: 1000, reapIntervalMs: 1000 },
    wake,
  });
  await waitGo();
  pool.start();
  return async () => {
    await pool.stop();
    await wake.close();
    await db.close();
  };
}

async function startPgBoss(): Promise<() => Promise<void>> {
  const { default: PgBoss } = await import("pg-boss");
  const boss = new PgBoss({
    connectionString: url!,
    max: Math.max(4, workers + 2),
    supervise: true,
    maintenanceIntervalSeconds: 1,
    monitorStateIntervalSeconds: 1,
  });
  boss.on("error", () => {});
  await boss.start();
  await waitGo();
  // pg-boss 10: one work() registration is one polling worker. After every fetch it sleeps
  // out the polling interval (>= 0.5 s) unless notified, so batchSize sets its throughput.
  for (let i = 0; i < workers; i++) {
    await boss.work(queue!, { batchSize: pgbossBatch, pollingIntervalSeconds: 0.5 }, async () =>
      hang ? never() : undefined,
    );
  }
  return () => boss.stop({ graceful: false, wait: true, timeout: 2000 });
}

function waitGo(): Promise<void> {
  process.stdout.write("ready\n");
  return new Promise((resolve) => {
    const rl = createInterface({ input: process.stdin });
    rl.on("line", (l) => {
      if (l.trim() === "go") resolve();
    });
  });
}

const stop = await (system === "pg-boss" ? startPgBoss() : startNovacron());
process.stdout.write("working\n");
process.once("SIGTERM", () => {
  void stop().finally(() => process.exit(0));
});
