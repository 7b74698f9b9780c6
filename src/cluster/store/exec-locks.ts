/**
 * Per-asset mutexes (table exec_asset_locks): an execution holds a lease on every asset its plan acts on while it
 * runs, so two executions never act on the same VM, host or external asset at once.
 * All leases of an execution are taken in one transaction in sorted order (the same
 * global order for everybody, so no two acquirers can deadlock) — all or none. A lease
 * carries an expiry renewed with the job's lease; a holder that dies stops renewing and
 * its leases lapse, so a mutex is never held forever.
 */
import type { Queryable, ReadQueryable } from "./db.js";

/** Why an acquire failed: who holds what. */
export interface MutexConflict {
  asset: string;
  heldBy: string;
}

/** The order leases are taken in: plain code-point order of the normalised asset names. */
export function lockOrder(assets: Iterable<string>): string[] {
  return [...new Set(assets)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * Takes (or re-takes, or extends) every asset's lease for `executionId`. Must run inside
 * a transaction (`tx`) so that a conflict on any asset rolls back the ones before it;
 * returns the conflict instead of throwing so the caller can decide to wait.
 */
export async function acquireAssets(
  tx: Queryable,
  executionId: string,
  holder: string,
  assets: string[],
  leaseMs: number,
): Promise<MutexConflict | undefined> {
  for (const asset of lockOrder(assets)) {
    const { rows } = await tx.query<{ execution_id: string }>(
      `INSERT INTO exec_asset_locks (asset, execution_id, holder, expires_at)
       VALUES ($1, $2, $3, clock_timestamp() + $4 * interval '1 millisecond')
       ON CONFLICT (asset) DO UPDATE SET execution_id = EXCLUDED.execution_id, holder = EXCLUDED.holder,
         expires_at = EXCLUDED.expires_at,
         acquired_at = CASE WHEN exec_asset_locks.execution_id = EXCLUDED.execution_id
                            THEN exec_asset_locks.acquired_at ELSE now() END
       WHERE exec_asset_locks.execution_id = EXCLUDED.execution_id
          OR exec_asset_locks.expires_at < clock_timestamp()
       RETURNING execution_id`,
      [asset, executionId, holder, leaseMs],
    );
    if (rows.length === 0) {
      const held = await tx.query<{ execution_id: string }>(
        "SELECT execution_id FROM exec_asset_locks WHERE asset = $1",
        [asset],
      );
      return { asset, heldBy: held.rows[0]?.execution_id ?? "unknown" };
    }
  }
  return undefined;
}

/** Extends the execution's leases; returns how many it still holds. */
export async function renewAssets(q: Queryable, executionId: string, leaseMs: number): Promise<number> {
  const { rowCount } = await q.query(
    `UPDATE exec_asset_locks SET expires_at = clock_timestamp() + $2 * interval '1 millisecond'
     WHERE execution_id = $1`,
    [executionId, leaseMs],
  );
  return rowCount;
}

/** Releases every lease the execution holds. */
export async function releaseAssets(q: Queryable, executionId: string): Promise<number> {
  const { rowCount } = await q.query("DELETE FROM exec_asset_locks WHERE execution_id = $1", [executionId]);
  return rowCount;
}

/** Who holds an asset now (an expired lease counts as free). */
export async function assetHolder(q: ReadQueryable, asset: string): Promise<string | undefined> {
  const { rows } = await q.query<{ execution_id: string }>(
    "SELECT execution_id FROM exec_asset_locks WHERE asset = $1 AND expires_at >= clock_timestamp()",
    [asset],
  );
  return rows[0]?.execution_id;
}
