/**
 * The job queue table (exec_jobs): enqueue, claim with FOR UPDATE SKIP LOCKED, renew,
 * complete, fail/retry, reap expired leases, hand back, and the dead-letter queue.
 *
 * A job's lease is (locked_by, attempts, lease_expires_at). Every write a worker makes is
 * fenced by `locked_by = worker AND attempts = attempt AND state = 'running'`: once the
 * reaper has returned a job to the queue (and maybe another worker claimed it, bumping
 * `attempts`), the old holder's writes match no row. All times are the database's clock,
 * so workers on different machines never compare their own clocks.
 */
import { JOB, type JobState } from "../../states/job.js";
import type { Queryable, ReadQueryable } from "./db.js";

export type { JobState };

/**
 * The moves the statements below make, each a compare-and-set on its from-state
 * (`WHERE … state = 'running'`), checked against the job machine (states/job.ts) when
 * this module loads so the SQL and the machine cannot drift apart. The states stay
 * literals in the SQL: the partial indexes on exec_jobs only match a literal predicate.
 */
const JOB_MOVES = {
  claimJobs: ["queued", "running"],
  completeJobs: ["running", "completed"],
  failJob: ["running", "queued"],
  "failJob (no attempt left)": ["running", "dead"],
  reapExpiredLeases: ["running", "queued"],
  "reapExpiredLeases (no attempt left)": ["running", "dead"],
  handBackJobs: ["running", "queued"],
  requeueDeadJob: ["dead", "queued"],
} as const satisfies Record<string, readonly [JobState, JobState]>;
for (const [statement, [from, to]] of Object.entries(JOB_MOVES)) JOB.assertTransition(statement, from, to);

/** A job to enqueue. */
export interface NewJob {
  payload?: Record<string, unknown>;
  /** 1-10, higher first. @defaultValue 5 */
  priority?: number;
  /** Not before this many ms from now. @defaultValue 0 */
  delayMs?: number;
  /** @defaultValue 3 */
  maxAttempts?: number;
  /** @defaultValue 15000 */
  leaseMs?: number;
}

/** A job a worker holds. */
export interface ClaimedJob {
  id: number;
  queue: string;
  payload: Record<string, unknown>;
  priority: number;
  /** This claim's attempt number (1-based): half of the fencing token. */
  attempt: number;
  maxAttempts: number;
  leaseMs: number;
  /** Milliseconds from when it became runnable to this claim (database clock). */
  waitedMs: number;
}

/** A job as an operator sees it (DLQ listing). */
export interface JobRecord {
  id: number;
  queue: string;
  payload: Record<string, unknown>;
  priority: number;
  state: JobState;
  attempts: number;
  maxAttempts: number;
  lockedBy: string | null;
  lastError: Record<string, unknown> | null;
  createdAt: string;
  finishedAt: string | null;
}

/** The NOTIFY channel idle workers LISTEN on; the payload is the queue name. */
export const JOBS_CHANNEL = "nova_jobs";

/** Enqueues jobs in one statement (and wakes listeners once); returns their ids in order. */
export async function enqueueJobs(q: Queryable, queue: string, jobs: NewJob[]): Promise<number[]> {
  if (jobs.length === 0) return [];
  const { rows } = await q.query<{ id: number }>(
    `WITH n AS (SELECT pg_notify('${JOBS_CHANNEL}', $1))
     INSERT INTO exec_jobs (queue, payload, priority, run_at, max_attempts, lease_ms)
     SELECT $1, p.payload, p.priority, now() + p.delay_ms * interval '1 millisecond', p.max_attempts, p.lease_ms
     FROM n, unnest($2::jsonb[], $3::int[], $4::int[], $5::int[], $6::int[])
          WITH ORDINALITY AS p(payload, priority, delay_ms, max_attempts, lease_ms, ord)
     ORDER BY p.ord
     RETURNING id`,
    [
      queue,
      jobs.map((j) => JSON.stringify(j.payload ?? {})),
      jobs.map((j) => j.priority ?? 5),
      jobs.map((j) => Math.max(0, Math.round(j.delayMs ?? 0))),
      jobs.map((j) => j.maxAttempts ?? 3),
      jobs.map((j) => j.leaseMs ?? 15_000),
    ],
  );
  return rows.map((r) => Number(r.id)).sort((a, b) => a - b);
}

interface ClaimRow {
  id: number;
  queue: string;
  payload: Record<string, unknown>;
  priority: number;
  attempts: number;
  max_attempts: number;
  lease_ms: number;
  waited_ms: number;
}

/**
 * Claims up to `limit` runnable jobs of `queues` for `workerId`: highest priority, then
 * oldest. SKIP LOCKED lets concurrent claimers take disjoint jobs without waiting.
 *
 * With one queue the comparison is `queue = $1[1]`, not `= ANY($1)`: only an equality on
 * the index's leading column lets PostgreSQL walk exec_jobs_ready_idx in claim order and
 * stop after `limit` rows. With ANY it reads and sorts every ready job on each claim —
 * 5,800 jobs/s on a 5k-job queue fell to 1,500 jobs/s on a 50k-job queue (bench:queue).
 */
export async function claimJobs(
  q: Queryable,
  queues: string[],
  workerId: string,
  limit: number,
): Promise<ClaimedJob[]> {
  const { rows } = await q.query<ClaimRow>(
    `WITH next AS (
       SELECT id FROM exec_jobs
       WHERE state = 'queued' AND queue = ${queues.length === 1 ? "($1::text[])[1]" : "ANY($1::text[])"} AND run_at <= now()
       ORDER BY priority DESC, run_at, id
       LIMIT $3
       FOR UPDATE SKIP LOCKED)
     UPDATE exec_jobs j SET state = 'running', locked_by = $2, attempts = j.attempts + 1,
       lease_expires_at = clock_timestamp() + j.lease_ms * interval '1 millisecond', started_at = now()
     FROM next WHERE j.id = next.id
     RETURNING j.id, j.queue, j.payload, j.priority, j.attempts, j.max_attempts, j.lease_ms,
       (extract(epoch FROM (clock_timestamp() - j.run_at)) * 1000)::float8 AS waited_ms`,
    [queues, workerId, limit],
  );
  return rows
    .map((r) => ({
      id: Number(r.id),
      queue: r.queue,
      payload: r.payload,
      priority: r.priority,
      attempt: r.attempts,
      maxAttempts: r.max_attempts,
      leaseMs: r.lease_ms,
      waitedMs: Math.max(0, Number(r.waited_ms)),
    }))
    .sort((a, b) => b.priority - a.priority || a.id - b.id);
}

/** Extends the leases of jobs `workerId` still holds; returns the ids it still holds. */
export async function renewLeases(
  q: Queryable,
  workerId: string,
  held: { id: number; attempt: number }[],
): Promise<Set<number>> {
  if (held.length === 0) return new Set();
  const { rows } = await q.query<{ id: number }>(
    `UPDATE exec_jobs j SET lease_expires_at = clock_timestamp() + j.lease_ms * interval '1 millisecond'
     FROM unnest($2::bigint[], $3::int[]) AS h(id, attempt)
     WHERE j.id = h.id AND j.attempts = h.attempt AND j.locked_by = $1 AND j.state = 'running'
     RETURNING j.id`,
    [workerId, held.map((h) => h.id), held.map((h) => h.attempt)],
  );
  return new Set(rows.map((r) => Number(r.id)));
}

/**
 * Locks the job's row when `workerId` still holds it under `attempt` (the fencing token);
 * false when the lease was lost. Run first in a transaction whose writes must be fenced:
 * the row lock keeps the reaper from taking the job back until the transaction ends.
 */
export async function holdJobLease(
  tx: Queryable,
  workerId: string,
  job: { id: number; attempt: number },
): Promise<boolean> {
  const { rows } = await tx.query(
    "SELECT 1 FROM exec_jobs WHERE id = $1 AND locked_by = $2 AND attempts = $3 AND state = 'running' FOR UPDATE",
    [job.id, workerId, job.attempt],
  );
  return rows.length > 0;
}

/** Marks held jobs completed; returns the ids that were still held (the rest were fenced out). */
export async function completeJobs(
  q: Queryable,
  workerId: string,
  done: { id: number; attempt: number }[],
): Promise<Set<number>> {
  if (done.length === 0) return new Set();
  const { rows } = await q.query<{ id: number }>(
    `UPDATE exec_jobs j SET state = 'completed', locked_by = NULL, lease_expires_at = NULL, finished_at = now()
     FROM unnest($2::bigint[], $3::int[]) AS d(id, attempt)
     WHERE j.id = d.id AND j.attempts = d.attempt AND j.locked_by = $1 AND j.state = 'running'
     RETURNING j.id`,
    [workerId, done.map((d) => d.id), done.map((d) => d.attempt)],
  );
  return new Set(rows.map((r) => Number(r.id)));
}

/**
 * Ends a failed attempt: back to the queue after `retryInMs`, or into the DLQ (`dead`)
 * when `retryInMs` is null. `refund` hands the attempt back (not the job's fault: a busy
 * mutex, a shutdown). Returns the new state, or undefined when the lease was lost.
 */
export async function failJob(
  q: Queryable,
  workerId: string,
  job: { id: number; attempt: number },
  error: Record<string, unknown>,
  retryInMs: number | null,
  refund = false,
): Promise<JobState | undefined> {
  const { rows } = await q.query<{ state: JobState }>(
    `UPDATE exec_jobs SET
       state = CASE WHEN $4::int IS NULL THEN 'dead' ELSE 'queued' END,
       run_at = CASE WHEN $4::int IS NULL THEN run_at ELSE now() + $4::int * interval '1 millisecond' END,
       attempts = CASE WHEN $6 THEN attempts - 1 ELSE attempts END,
       finished_at = CASE WHEN $4::int IS NULL THEN now() ELSE NULL END,
       locked_by = NULL, lease_expires_at = NULL, last_error = $5::jsonb
     WHERE id = $1 AND attempts = $2 AND locked_by = $3 AND state = 'running'
     RETURNING state`,
    [job.id, job.attempt, workerId, retryInMs, JSON.stringify(error), refund],
  );
  return rows[0]?.state;
}

/** A job whose lease the reaper ended. */
export interface ReapedJob {
  id: number;
  queue: string;
  payload: Record<string, unknown>;
  state: JobState;
  lockedBy: string;
  attempts: number;
}

/**
 * Returns jobs whose lease expired to the queue at once (or to the DLQ when no attempt is
 * left). Any server's pool may run this; SKIP LOCKED keeps concurrent reapers apart and
 * never touches a job a live worker is renewing at that instant.
 */
export async function reapExpiredLeases(q: Queryable, limit = 1000): Promise<ReapedJob[]> {
  const { rows } = await q.query<{
    id: number;
    queue: string;
    payload: Record<string, unknown>;
    state: JobState;
    old_holder: string;
    attempts: number;
  }>(
    `WITH expired AS (
       SELECT id, locked_by FROM exec_jobs
       WHERE state = 'running' AND lease_expires_at < clock_timestamp()
       LIMIT $1 FOR UPDATE SKIP LOCKED)
     UPDATE exec_jobs j SET
       state = CASE WHEN j.attempts >= j.max_attempts THEN 'dead' ELSE 'queued' END,
       finished_at = CASE WHEN j.attempts >= j.max_attempts THEN now() ELSE NULL END,
       run_at = now(), locked_by = NULL, lease_expires_at = NULL,
       last_error = jsonb_build_object('code', 'NOVA_EXEC_LEASE_LOST',
         'message', 'lease of worker ' || expired.locked_by || ' expired (worker died or stalled)')
     FROM expired WHERE j.id = expired.id
     RETURNING j.id, j.queue, j.payload, j.state, expired.locked_by AS old_holder, j.attempts`,
    [limit],
  );
  return rows.map((r) => ({
    id: Number(r.id),
    queue: r.queue,
    payload: r.payload,
    state: r.state,
    lockedBy: r.old_holder,
    attempts: r.attempts,
  }));
}

/** Hands jobs back without using up an attempt (graceful shutdown). */
export async function handBackJobs(
  q: Queryable,
  workerId: string,
  held: { id: number; attempt: number }[],
): Promise<number> {
  if (held.length === 0) return 0;
  const { rowCount } = await q.query(
    `UPDATE exec_jobs j SET state = 'queued', locked_by = NULL, lease_expires_at = NULL,
       attempts = j.attempts - 1, run_at = now()
     FROM unnest($2::bigint[], $3::int[]) AS h(id, attempt)
     WHERE j.id = h.id AND j.attempts = h.attempt AND j.locked_by = $1 AND j.state = 'running'`,
    [workerId, held.map((h) => h.id), held.map((h) => h.attempt)],
  );
  if (rowCount > 0) await q.query(`SELECT pg_notify('${JOBS_CHANNEL}', '')`);
  return rowCount;
}

/** Runnable jobs (up to `cap`, so counting stays cheap on a deep queue). */
export async function readyDepth(q: ReadQueryable, queues: string[], cap = 10_000): Promise<number> {
  const { rows } = await q.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM (SELECT 1 FROM exec_jobs
       WHERE state = 'queued' AND queue = ANY($1) AND run_at <= now() LIMIT $2) s`,
    [queues, cap],
  );
  return rows[0]?.n ?? 0;
}

/** Jobs by queue and state (metrics). */
export async function countJobs(q: ReadQueryable): Promise<{ queue: string; state: JobState; n: number }[]> {
  const { rows } = await q.query<{ queue: string; state: JobState; n: number }>(
    "SELECT queue, state, count(*)::int AS n FROM exec_jobs WHERE state <> 'completed' GROUP BY queue, state",
  );
  return rows;
}

interface JobRow {
  id: number;
  queue: string;
  payload: Record<string, unknown>;
  priority: number;
  state: JobState;
  attempts: number;
  max_attempts: number;
  locked_by: string | null;
  last_error: Record<string, unknown> | null;
  created_at: Date;
  finished_at: Date | null;
}

function toJob(r: JobRow): JobRecord {
  return {
    id: Number(r.id),
    queue: r.queue,
    payload: r.payload,
    priority: r.priority,
    state: r.state,
    attempts: r.attempts,
    maxAttempts: r.max_attempts,
    lockedBy: r.locked_by,
    lastError: r.last_error,
    createdAt: new Date(r.created_at).toISOString(),
    finishedAt: r.finished_at ? new Date(r.finished_at).toISOString() : null,
  };
}

/** One job. */
export function getJob(q: ReadQueryable, id: number): Promise<JobRecord | undefined> {
  return readJob(q, id, false);
}

/** `getJob` that also locks the job's row until the transaction ends. */
export function lockJob(tx: Queryable, id: number): Promise<JobRecord | undefined> {
  return readJob(tx, id, true);
}

async function readJob(q: ReadQueryable, id: number, forUpdate: boolean): Promise<JobRecord | undefined> {
  const { rows } = await q.query<JobRow>(
    `SELECT * FROM exec_jobs WHERE id = $1${forUpdate ? " FOR UPDATE" : ""}`,
    [id],
  );
  return rows[0] ? toJob(rows[0]) : undefined;
}

/** The dead-letter queue, newest first. */
export async function listDeadJobs(q: ReadQueryable, queue?: string, limit = 200): Promise<JobRecord[]> {
  const { rows } = await q.query<JobRow>(
    `SELECT * FROM exec_jobs WHERE state = 'dead' AND ($1::text IS NULL OR queue = $1)
     ORDER BY finished_at DESC, id DESC LIMIT $2`,
    [queue ?? null, limit],
  );
  return rows.map(toJob);
}

/** Moves a dead job back to the queue with a fresh set of attempts; false when it is not dead. */
export async function requeueDeadJob(q: Queryable, id: number): Promise<boolean> {
  const { rowCount } = await q.query(
    `UPDATE exec_jobs SET state = 'queued', attempts = 0, run_at = now(), finished_at = NULL
     WHERE id = $1 AND state = 'dead'`,
    [id],
  );
  if (rowCount > 0) await q.query(`SELECT pg_notify('${JOBS_CHANNEL}', '')`);
  return rowCount > 0;
}
