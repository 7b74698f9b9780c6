/**
 * The exec_idempotency table: which execution a submission key names, until its window
 * passes (exec/idempotency.ts computes the keys).
 */
import type { Queryable } from "./db.js";

/**
 * Claims `key` for `executionId` unless a live claim exists; returns the execution id
 * that owns the key now (the caller's when it won). The claim is an INSERT … ON CONFLICT
 * in the submitting transaction, so two concurrent duplicates serialise on the key's row.
 */
export async function claimKey(
  tx: Queryable,
  key: string,
  executionId: string,
  windowMs: number,
): Promise<string> {
  const { rows } = await tx.query<{ execution_id: string }>(
    `INSERT INTO exec_idempotency (key, execution_id, expires_at)
     VALUES ($1, $2, now() + $3 * interval '1 millisecond')
     ON CONFLICT (key) DO UPDATE SET execution_id = EXCLUDED.execution_id, expires_at = EXCLUDED.expires_at
       WHERE exec_idempotency.expires_at < now()
     RETURNING execution_id`,
    [key, executionId, windowMs],
  );
  if (rows[0]) return rows[0].execution_id;
  const existing = await tx.query<{ execution_id: string }>(
    "SELECT execution_id FROM exec_idempotency WHERE key = $1",
    [key],
  );
  return existing.rows[0]!.execution_id;
}
