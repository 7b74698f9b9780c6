/**
 * The pruner: deletes what finished long enough ago — completed, cancelled and rejected
 * executions (their steps and logs go with them), completed queue jobs — and idempotency
 * keys whose window has passed. It never touches anything live: queued, running or
 * waiting executions and jobs, and the dead-letter queue (failed, partial and timed-out
 * executions, dead jobs), which waits for an operator however old it is.
 *
 * Deletes run in batches of `batchSize` rows per statement, at most `maxBatchesPerRun`
 * per table per run, so a first run over a long history neither holds locks for long nor
 * writes one huge WAL burst; what is left waits for the next run. Every server with
 * workers runs it; SKIP LOCKED keeps concurrent pruners (and live workers) apart.
 *
 * Completed jobs are found by walking the primary key in id order (ids grow with time),
 * `batchSize` completed jobs at a time, deleting those that finished before the cutoff;
 * the walk ends at the first batch with none old enough. A time index on exec_jobs would
 * make every job completion pay an extra index insert on the queue's hot path; the id
 * walk needs none. Its one approximation: old jobs behind a whole batch of young ones
 * with lower ids (jobs that ran long) wait until those age too.
 */
import type { Logger } from "pino";
import type { Queryable } from "../cluster/store/db.js";
import { describeError } from "../lib/errors.js";
import type { RetentionOptions } from "./config.js";

/** What one run deleted. */
export interface PruneResult {
  executions: number;
  jobs: number;
  idempotencyKeys: number;
  assetLocks: number;
  /** Statements issued, per table summed: bounded by 4 × maxBatchesPerRun. */
  batches: number;
}

/** Execution states that are over for good (the DLQ states are not among them). */
export const PRUNABLE_EXECUTION_STATES = ["completed", "cancelled", "rejected"] as const;

/** Expired asset leases are already free; their rows go after this long. */
const STALE_LOCK_MS = 3_600_000;

/** One pass over every table, in bounded batches. */
export async function pruneOnce(db: Queryable, r: RetentionOptions): Promise<PruneResult> {
  const result: PruneResult = { executions: 0, jobs: 0, idempotencyKeys: 0, assetLocks: 0, batches: 0 };
  const drain = async (key: Exclude<keyof PruneResult, "batches">, batch: () => Promise<number>) => {
    for (let i = 0; i < r.maxBatchesPerRun; i++) {
      const n = await batch();
      result.batches++;
      result[key] += n;
      if (n < r.batchSize) return;
    }
  };
  await drain("executions", () => pruneExecutions(db, r.finishedMs, r.batchSize));
  let after = 0;
  for (let i = 0; i < r.maxBatchesPerRun; i++) {
    const b = await pruneCompletedJobs(db, r.finishedMs, r.batchSize, after);
    result.batches++;
    result.jobs += b.deleted;
    if (b.deleted === 0 || b.scanned < r.batchSize) break;
    after = b.lastId;
  }
  await drain("idempotencyKeys", () => pruneIdempotencyKeys(db, r.batchSize));
  await drain("assetLocks", () => pruneStaleLocks(db, r.batchSize));
  return result;
}

/**
 * Deletes up to `limit` executions that ended (completed, cancelled, rejected) more than
 * `retentionMs` ago and whose job, if any, is completed too; their steps and logs go by
 * ON DELETE CASCADE, and so do idempotency keys still naming them (a key must never
 * point at nothing). Returns how many executions went.
 */
export async function pruneExecutions(q: Queryable, retentionMs: number, limit: number): Promise<number> {
  const { rows } = await q.query<{ id: string }>(
    `WITH old AS (
       SELECT e.id FROM executions e
       WHERE e.state = ANY($3::text[]) AND e.finished_at < now() - $1 * interval '1 millisecond'
         AND NOT EXISTS (SELECT 1 FROM exec_jobs j WHERE j.id = e.job_id AND j.state <> 'completed')
       ORDER BY e.finished_at
       LIMIT $2
       FOR UPDATE OF e SKIP LOCKED),
     keys AS (DELETE FROM exec_idempotency k USING old WHERE k.execution_id = old.id)
     DELETE FROM executions e USING old WHERE e.id = old.id
     RETURNING e.id`,
    [retentionMs, limit, PRUNABLE_EXECUTION_STATES],
  );
  return rows.length;
}

/**
 * Looks at the next `limit` completed jobs after id `afterId` and deletes those that
 * finished more than `retentionMs` ago (see the header); says how many it looked at and
 * deleted, and the last id it looked at (where the next batch starts).
 */
export async function pruneCompletedJobs(
  q: Queryable,
  retentionMs: number,
  limit: number,
  afterId = 0,
): Promise<{ scanned: number; deleted: number; lastId: number }> {
  const { rows } = await q.query<{ scanned: number; deleted: number; last_id: number | null }>(
    `WITH batch AS (
       SELECT id, finished_at FROM exec_jobs WHERE state = 'completed' AND id > $3
       ORDER BY id
       LIMIT $2
       FOR UPDATE SKIP LOCKED),
     gone AS (
       DELETE FROM exec_jobs j USING batch
       WHERE j.id = batch.id AND batch.finished_at < now() - $1 * interval '1 millisecond'
       RETURNING j.id)
     SELECT (SELECT count(*) FROM batch)::int AS scanned, (SELECT count(*) FROM gone)::int AS deleted,
       (SELECT max(id) FROM batch) AS last_id`,
    [retentionMs, limit, afterId],
  );
  const r = rows[0]!;
  return { scanned: r.scanned, deleted: r.deleted, lastId: Number(r.last_id ?? afterId) };
}

/** Deletes idempotency keys whose window has passed, up to `limit`. */
export async function pruneIdempotencyKeys(q: Queryable, limit: number): Promise<number> {
  const { rows } = await q.query<{ key: string }>(
    `DELETE FROM exec_idempotency WHERE key IN (
       SELECT key FROM exec_idempotency WHERE expires_at < now() ORDER BY expires_at LIMIT $1
       FOR UPDATE SKIP LOCKED)
     RETURNING key`,
    [limit],
  );
  return rows.length;
}

/** Deletes asset leases that expired long ago (an expired lease already counts as free). */
export async function pruneStaleLocks(q: Queryable, limit: number): Promise<number> {
  const { rows } = await q.query<{ asset: string }>(
    `DELETE FROM exec_asset_locks WHERE asset IN (
       SELECT asset FROM exec_asset_locks WHERE expires_at < now() - $2 * interval '1 millisecond'
       LIMIT $1 FOR UPDATE SKIP LOCKED)
     RETURNING asset`,
    [limit, STALE_LOCK_MS],
  );
  return rows.length;
}

/** Runs `pruneOnce` every `pruneIntervalMs` (first run one interval after start). */
export class Pruner {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private last: { at: string; result?: PruneResult; error?: string } | undefined;

  constructor(
    private readonly db: Queryable,
    private readonly retention: RetentionOptions,
    private readonly log?: Logger,
  ) {}

  /** Starts the periodic runs. */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.run(), this.retention.pruneIntervalMs);
    this.timer.unref();
  }

  /** Runs once now (unless a run is in progress, which it waits for instead). */
  run(): Promise<void> {
    this.running ??= (async () => {
      try {
        const result = await pruneOnce(this.db, this.retention);
        this.last = { at: new Date().toISOString(), result };
        if (result.executions + result.jobs + result.idempotencyKeys + result.assetLocks > 0)
          this.log?.info(result, "pruned finished executions, jobs and expired idempotency keys");
      } catch (err) {
        // The database may be away (restart): the next run tries again.
        this.last = { at: new Date().toISOString(), error: describeError(err) };
        this.log?.warn({ err: describeError(err) }, "pruning failed; retrying at the next run");
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  /** The last run's outcome (health, tests). */
  lastRun(): { at: string; result?: PruneResult; error?: string } | undefined {
    return this.last;
  }

  /** Stops the periodic runs and waits for one in progress. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }
}
