// The job queue and worker pool on a real PostgreSQL server and on PGlite: claim order,
// fencing, reaping, retries with backoff, the DLQ, and the pool's sizing and draining.
import { beforeEach, describe, expect, it } from "vitest";
import {
  claimJobs,
  completeJobs,
  enqueueJobs,
  failJob,
  getJob,
  listDeadJobs,
  reapExpiredLeases,
  renewLeases,
  requeueDeadJob,
} from "../src/cluster/store/executions-queue.js";
import type { Store } from "../src/cluster/store/store.js";
import { JobDead, JobDeferred, WorkerPool } from "../src/exec/pool.js";
import { NovaError } from "../src/lib/errors.js";
import { waitFor } from "../src/lib/wait.js";
import { ENGINES, storePerSuite } from "./helpers/databases.js";

const FAST_POOL = {
  pollIntervalMs: 200,
  reapIntervalMs: 100,
  scaleIntervalMs: 100,
  idleShrinkMs: 300,
  drainMs: 2000,
};
const FAST_BACKOFF = { baseMs: 20, maxMs: 100, jitter: 0.5 };

describe.each(ENGINES)("execution queue on $engine", ({ engine, create }) => {
  let store!: Store;
  storePerSuite(create, (s) => {
    store = s;
  });
  beforeEach(async () => {
    await store.db.query("DELETE FROM exec_jobs");
  });

  it("claims the highest priority first, then the oldest, and skips jobs not due yet", async () => {
    await enqueueJobs(store.db, "q", [
      { payload: { n: 1 }, priority: 5 },
      { payload: { n: 2 }, priority: 9 },
      { payload: { n: 3 }, priority: 5 },
      { payload: { n: 4 }, priority: 10, delayMs: 60_000 },
    ]);
    const jobs = await claimJobs(store.db, ["q"], "w1", 10);
    expect(jobs.map((j) => j.payload.n)).toEqual([2, 1, 3]);
    expect(jobs.every((j) => j.attempt === 1)).toBe(true);
    expect(await claimJobs(store.db, ["q"], "w2", 10)).toEqual([]);
  });

  it("gives concurrent claimers disjoint jobs", async () => {
    await enqueueJobs(
      store.db,
      "q",
      Array.from({ length: 200 }, (_, i) => ({ payload: { i } })),
    );
    const batches = await Promise.all(
      Array.from({ length: 8 }, (_, w) => claimJobs(store.db, ["q"], `w${w}`, 30)),
    );
    const ids = batches.flat().map((j) => j.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.length).toBe(200);
  });

  it("fences out a worker whose lease expired and was reaped", async () => {
    const [id] = await enqueueJobs(store.db, "q", [{ leaseMs: 300 }]);
    const [old] = await claimJobs(store.db, ["q"], "old", 1);
    await waitFor(async () => (await reapExpiredLeases(store.db)).some((j) => j.id === id), {
      timeoutMs: 5000,
      what: "the lease to be reaped",
    });
    const [fresh] = await claimJobs(store.db, ["q"], "new", 1);
    expect(fresh!.attempt).toBe(2);
    // The old holder can no longer renew, complete or fail it.
    expect((await renewLeases(store.db, "old", [old!])).size).toBe(0);
    expect((await completeJobs(store.db, "old", [old!])).size).toBe(0);
    expect(await failJob(store.db, "old", old!, { m: "x" }, null)).toBeUndefined();
    // Not even with the same worker id but the stale attempt number.
    expect((await completeJobs(store.db, "new", [{ id: id!, attempt: 1 }])).size).toBe(0);
    expect((await completeJobs(store.db, "new", [fresh!])).size).toBe(1);
    expect((await getJob(store.db, id!))?.state).toBe("completed");
  });

  it("keeps a renewed lease alive past its original expiry", async () => {
    const [id] = await enqueueJobs(store.db, "q", [{ leaseMs: 400 }]);
    const [job] = await claimJobs(store.db, ["q"], "w", 1);
    const until = Date.now() + 1000;
    while (Date.now() < until) {
      expect((await renewLeases(store.db, "w", [job!])).has(id!)).toBe(true);
      expect(await reapExpiredLeases(store.db)).toEqual([]);
      await new Promise((r) => setTimeout(r, 100));
    }
  });

  it("retries after a backoff, then dead-letters when attempts run out, and requeues", async () => {
    const [id] = await enqueueJobs(store.db, "q", [{ maxAttempts: 2 }]);
    const [a1] = await claimJobs(store.db, ["q"], "w", 1);
    expect(await failJob(store.db, "w", a1!, { message: "boom" }, 300)).toBe("queued");
    expect(await claimJobs(store.db, ["q"], "w", 1)).toEqual([]); // not due yet
    const a2 = await waitFor(async () => (await claimJobs(store.db, ["q"], "w", 1))[0], {
      timeoutMs: 3000,
      what: "the retry",
    });
    expect(a2.attempt).toBe(2);
    expect(await failJob(store.db, "w", a2, { message: "boom again" }, null)).toBe("dead");
    const dead = await listDeadJobs(store.db, "q");
    expect(dead.map((d) => d.id)).toEqual([id]);
    expect(dead[0]!.lastError).toMatchObject({ message: "boom again" });
    expect(await requeueDeadJob(store.db, id!)).toBe(true);
    expect(await requeueDeadJob(store.db, id!)).toBe(false);
    const [again] = await claimJobs(store.db, ["q"], "w", 1);
    expect(again!.attempt).toBe(1);
  });

  it("reaps an expired lease of a job with no attempts left into the DLQ", async () => {
    const [id] = await enqueueJobs(store.db, "q", [{ maxAttempts: 1, leaseMs: 300 }]);
    await claimJobs(store.db, ["q"], "w", 1);
    const reaped = await waitFor(async () => (await reapExpiredLeases(store.db)).find((j) => j.id === id), {
      timeoutMs: 5000,
      what: "the lease to expire",
    });
    expect(reaped.state).toBe("dead");
    expect((await getJob(store.db, id!))?.lastError).toMatchObject({ code: "NOVA_EXEC_LEASE_LOST" });
  });

  it("runs every job exactly once across two pools, retrying failures and dead-lettering the hopeless", async () => {
    const runs = new Map<number, number>();
    let concurrent = 0;
    let maxConcurrent = 0;
    const handler = async (job: { payload: Record<string, unknown>; attempt: number }) => {
      const n = Number(job.payload.n);
      runs.set(n, (runs.get(n) ?? 0) + 1);
      concurrent++;
      maxConcurrent = Math.max(maxConcurrent, concurrent);
      await new Promise((r) => setImmediate(r));
      concurrent--;
      if (n % 50 === 7 && job.attempt === 1) throw new NovaError("NOVA_TIMEOUT", "transient");
      if (n === 13) throw new JobDead("hopeless", { message: "hopeless" });
      if (n === 21 && runs.get(21) === 1) throw new JobDeferred("not yet", 50);
    };
    const mk = () =>
      new WorkerPool({
        db: store.db,
        handlers: { q: handler },
        pool: { ...FAST_POOL, minWorkers: 4, maxWorkers: 4 },
        backoff: FAST_BACKOFF,
      });
    const pools = [mk(), mk()];
    await enqueueJobs(
      store.db,
      "q",
      Array.from({ length: 300 }, (_, n) => ({ payload: { n }, maxAttempts: 3 })),
    );
    for (const p of pools) p.start();
    try {
      await waitFor(
        async () => {
          const { rows } = await store.db.query<{ n: number }>(
            "SELECT count(*)::int AS n FROM exec_jobs WHERE state IN ('completed', 'dead')",
          );
          return rows[0]!.n === 300;
        },
        { timeoutMs: 30_000, what: "all jobs to finish" },
      );
    } finally {
      for (const p of pools) await p.stop();
    }
    for (let n = 0; n < 300; n++) {
      const expected = n % 50 === 7 || n === 21 ? 2 : 1;
      expect(runs.get(n), `job ${n}`).toBe(expected);
    }
    expect(maxConcurrent).toBeLessThanOrEqual(8);
    const dead = await listDeadJobs(store.db, "q");
    expect(dead.map((d) => d.payload.n)).toEqual([13]);
    const deferred = await store.db.query<{ attempts: number }>(
      "SELECT attempts FROM exec_jobs WHERE payload->>'n' = '21'",
    );
    expect(deferred.rows[0]!.attempts).toBe(1); // a deferral does not use up an attempt
  });

  it("grows with queue depth, shrinks when idle, and hands back what it holds on shutdown", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const started = new Set<number>();
    const pool = new WorkerPool({
      db: store.db,
      handlers: {
        q: async (job, ctx) => {
          started.add(job.id);
          await Promise.race([gate, new Promise((r) => ctx.signal.addEventListener("abort", r))]);
          if (ctx.signal.aborted) throw ctx.signal.reason;
        },
      },
      pool: { ...FAST_POOL, minWorkers: 1, maxWorkers: 5, drainMs: 200 },
      backoff: FAST_BACKOFF,
    });
    await enqueueJobs(
      store.db,
      "q",
      Array.from({ length: 8 }, () => ({})),
    );
    pool.start();
    await waitFor(() => pool.health().size === 5 && started.size === 5, {
      timeoutMs: 10_000,
      what: "growth to 5",
    });
    release();
    await waitFor(
      async () => (await store.db.query("SELECT 1 FROM exec_jobs WHERE state <> 'completed'")).rowCount === 0,
      {
        timeoutMs: 10_000,
        what: "the jobs to finish",
      },
    );
    await waitFor(() => pool.health().size === 1, { timeoutMs: 10_000, what: "shrinking back to 1" });
    expect(pool.health()).toMatchObject({ status: "ok", minWorkers: 1, maxWorkers: 5 });
    // Stopped first: its idle worker would otherwise race `held` for the next job.
    await pool.stop();

    // Shutdown with a job that never finishes: it is handed back without using an attempt.
    const held = new WorkerPool({
      db: store.db,
      handlers: { q: () => new Promise(() => {}) },
      pool: { ...FAST_POOL, minWorkers: 1, maxWorkers: 1, drainMs: 100 },
      backoff: FAST_BACKOFF,
    });
    const [id] = await enqueueJobs(store.db, "q", [{}]);
    held.start();
    await waitFor(() => held.runningJobIds().includes(id!), { timeoutMs: 5000, what: "the claim" });
    await held.stop();
    expect(await getJob(store.db, id!)).toMatchObject({ state: "queued", attempts: 0, lockedBy: null });
  });

  it("aborts a job locally when its lease is taken over", async () => {
    let aborted: unknown;
    const pool = new WorkerPool({
      db: store.db,
      handlers: {
        q: (_job, ctx) =>
          new Promise<void>((resolve) =>
            ctx.signal.addEventListener("abort", () => {
              aborted = ctx.signal.reason;
              resolve();
            }),
          ),
      },
      pool: { ...FAST_POOL, minWorkers: 1, maxWorkers: 1, reapIntervalMs: 60_000 },
    });
    const [id] = await enqueueJobs(store.db, "q", [{ leaseMs: 600 }]);
    pool.start();
    try {
      await waitFor(() => pool.runningJobIds().includes(id!), { timeoutMs: 5000, what: "the claim" });
      // Someone else (a reaper that saw it expire) takes it over.
      await store.db.query(
        "UPDATE exec_jobs SET locked_by = 'thief', attempts = attempts + 1 WHERE id = $1",
        [id],
      );
      await waitFor(() => aborted !== undefined, { timeoutMs: 5000, what: "the local abort" });
      expect(aborted).toMatchObject({ code: "NOVA_EXEC_LEASE_LOST" });
      // The thief still holds it: the pool did not complete it behind its back.
      expect(await getJob(store.db, id!)).toMatchObject({ state: "running", lockedBy: "thief" });
    } finally {
      await pool.stop();
    }
    expect(engine).toBeDefined();
  });
});
