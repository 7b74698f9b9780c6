/**
 * The control plane's tables (SQL 000016): the leader lease and the replicas seen. Every
 * time is the database's clock. The only writer of both; leadership.ts decides, this
 * reads and writes.
 */
import type { LeaseRow } from "../leader-lease.js";
import type { Queryable, ReadQueryable } from "./db.js";

/** The lease as the API shows it. */
export interface LeaseView {
  holder: string | null;
  epoch: number;
  acquiredAt: string | null;
  renewedAt: string | null;
  expiresAt: string;
  /** Milliseconds until it runs out by the database's clock (negative once it has). */
  expiresInMs: number;
}

/** A replica as the API shows it. */
export interface ReplicaRow {
  id: string;
  apiUrl: string;
  hostName: string;
  version: string;
  startedAt: string;
  lastSeenAt: string;
  /** Seconds since it last ran an election tick, by the database's clock. */
  lastSeenAgeSeconds: number;
}

/** What a replica says about itself each tick. */
export interface ReplicaSelf {
  id: string;
  apiUrl: string;
  hostName: string;
  version: string;
}

const iso = (v: unknown): string => (v instanceof Date ? v.toISOString() : String(v));
const isoOrNull = (v: unknown): string | null => (v === null || v === undefined ? null : iso(v));

/**
 * Reads the lease row under a row lock (inside a transaction) with whether it has run out,
 * and whether the holder's database session still exists when `checkSession` (PostgreSQL).
 */
export async function lockLease(
  tx: Queryable,
  checkSession: boolean,
): Promise<{ row: LeaseRow; holderSessionAlive: boolean | undefined }> {
  const { rows } = await tx.query<{
    holder: string | null;
    epoch: number;
    holder_pid: number | null;
    expired: boolean;
  }>(
    "SELECT holder, epoch, holder_pid, expires_at <= now() AS expired FROM control_plane_lease WHERE id = 1 FOR UPDATE",
  );
  const r = rows[0]!;
  const row: LeaseRow = {
    holder: r.holder,
    epoch: Number(r.epoch),
    holderPid: r.holder_pid,
    expired: r.expired,
  };
  let holderSessionAlive: boolean | undefined;
  if (checkSession && r.holder_pid !== null) {
    // pid only (any role may see every session's pid): a session of the same process id in
    // another database would keep the lease for its TTL at worst, never hand it out early.
    const alive = await tx.query<{ alive: boolean }>(
      "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1) AS alive",
      [r.holder_pid],
    );
    holderSessionAlive = alive.rows[0]!.alive;
  }
  return { row, holderSessionAlive };
}

/** Extends this holder's lease by `ttlMs` from now (same epoch); returns the epoch kept. */
export async function renewLease(
  tx: Queryable,
  holder: string,
  epoch: number,
  ttlMs: number,
  holderPid: number | null,
): Promise<boolean> {
  const { rowCount } = await tx.query(
    `UPDATE control_plane_lease
        SET renewed_at = now(), expires_at = now() + make_interval(secs => $3::double precision / 1000), holder_pid = $4
      WHERE id = 1 AND holder = $1 AND epoch = $2`,
    [holder, epoch, ttlMs, holderPid],
  );
  return rowCount === 1;
}

/** Takes the lease for `holder` from `fromEpoch` (compare-and-set): a new term; returns it or undefined when the row moved. */
export async function takeLease(
  tx: Queryable,
  holder: string,
  fromEpoch: number,
  ttlMs: number,
  holderPid: number | null,
): Promise<{ epoch: number; acquiredAt: string } | undefined> {
  const { rows } = await tx.query<{ epoch: number; acquired_at: unknown }>(
    `UPDATE control_plane_lease
        SET holder = $1, epoch = epoch + 1, holder_pid = $4, acquired_at = now(), renewed_at = now(),
            expires_at = now() + make_interval(secs => $3::double precision / 1000)
      WHERE id = 1 AND epoch = $2
      RETURNING epoch, acquired_at`,
    [holder, fromEpoch, ttlMs, holderPid],
  );
  const r = rows[0];
  return r ? { epoch: Number(r.epoch), acquiredAt: iso(r.acquired_at) } : undefined;
}

/** Gives the lease up (a clean shutdown): the next replica takes it at its next tick. */
export async function releaseLease(q: Queryable, holder: string, epoch: number): Promise<boolean> {
  const { rowCount } = await q.query(
    "UPDATE control_plane_lease SET holder = NULL, holder_pid = NULL, expires_at = now() WHERE id = 1 AND holder = $1 AND epoch = $2",
    [holder, epoch],
  );
  return rowCount === 1;
}

/** The lease now. */
export async function readLease(q: ReadQueryable): Promise<LeaseView> {
  const { rows } = await q.query<{
    holder: string | null;
    epoch: number;
    acquired_at: unknown;
    renewed_at: unknown;
    expires_at: unknown;
    expires_in_ms: number;
  }>(
    `SELECT holder, epoch, acquired_at, renewed_at, expires_at,
            (extract(epoch FROM (expires_at - now())) * 1000)::double precision AS expires_in_ms
       FROM control_plane_lease WHERE id = 1`,
  );
  const r = rows[0]!;
  return {
    holder: r.holder,
    epoch: Number(r.epoch),
    acquiredAt: isoOrNull(r.acquired_at),
    renewedAt: isoOrNull(r.renewed_at),
    expiresAt: iso(r.expires_at),
    expiresInMs: Math.round(Number(r.expires_in_ms)),
  };
}

/** Records that this replica is alive (every election tick). */
export async function touchReplica(q: Queryable, self: ReplicaSelf): Promise<void> {
  await q.query(
    `INSERT INTO control_plane_replicas (id, api_url, host_name, version) VALUES ($1, $2, $3, $4)
     ON CONFLICT (id) DO UPDATE SET api_url = EXCLUDED.api_url, last_seen_at = now()`,
    [self.id, self.apiUrl, self.hostName, self.version],
  );
}

/** Replicas seen within `withinSeconds`, most recently started first (bounded: 100). */
export async function listReplicas(q: ReadQueryable, withinSeconds = 3600): Promise<ReplicaRow[]> {
  const { rows } = await q.query<{
    id: string;
    api_url: string;
    host_name: string;
    version: string;
    started_at: unknown;
    last_seen_at: unknown;
    age: number;
  }>(
    `SELECT id, api_url, host_name, version, started_at, last_seen_at,
            extract(epoch FROM (now() - last_seen_at))::double precision AS age
       FROM control_plane_replicas
      WHERE last_seen_at > now() - make_interval(secs => $1::double precision)
      ORDER BY started_at DESC LIMIT 100`,
    [withinSeconds],
  );
  return rows.map((r) => ({
    id: r.id,
    apiUrl: r.api_url,
    hostName: r.host_name,
    version: r.version,
    startedAt: iso(r.started_at),
    lastSeenAt: iso(r.last_seen_at),
    lastSeenAgeSeconds: Math.max(0, Math.round(Number(r.age) * 10) / 10),
  }));
}

/** Forgets replicas not seen for `olderThanSeconds`; returns how many. */
export async function pruneReplicas(q: Queryable, olderThanSeconds = 86_400): Promise<number> {
  const { rowCount } = await q.query(
    "DELETE FROM control_plane_replicas WHERE last_seen_at < now() - make_interval(secs => $1::double precision)",
    [olderThanSeconds],
  );
  return rowCount;
}
