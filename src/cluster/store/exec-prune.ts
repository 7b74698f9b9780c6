/**
 * The pruner's deletes (exec/pruner.ts decides when and how many batches): finished
 * executions, completed queue jobs, expired idempotency keys and long-expired asset
 * leases, each in one bounded statement that skips rows someone else holds.
 */
import { EXECUTION, type ExecState } from "../../states/execution.js";
import type { Queryable } from "./db.js";

/**
 * Execution states that are over for good: final with no way out (the DLQ states, which
 * an operator may retry, are not among them).
 */
export const PRUNABLE_EXECUTION_STATES: readonly ExecState[] = EXECUTION.final.filter(
  (s) => EXECUTION.transitions[s].length === 0,
);

/** Expired asset leases are already free; their rows go after this long. */
const STALE_LOCK_MS = 3_600_000;

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
