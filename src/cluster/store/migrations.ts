/** The migrations table: one row per live migration, every step recorded with its event. */

import { randomUUID } from "node:crypto";
import type { ClusterEvent } from "../../api/types/events.js";
import type {
  Migration,
  MigrationOptions,
  MigrationProgress,
  MigrationResult,
} from "../../api/types/migrations.js";
import { NovaError } from "../../lib/errors.js";
import { stateChanged } from "../../lib/state-machine.js";
import { traceIdOf } from "../../lib/tracing.js";
import { MIGRATION, type MigrationState } from "../../states/migration.js";
import type { Queryable, ReadQueryable } from "./db.js";
import { appendEvent } from "./events.js";

/** States in which a migration is still in flight. */
export const ACTIVE_MIGRATION_STATES: readonly MigrationState[] = MIGRATION.active;

interface MigrationRow {
  id: string;
  vm_id: string | null;
  vm_name: string;
  trace_parent: string | null;
  source_host_id: string;
  target_host_id: string | null;
  target_cluster_id: string | null;
  target_cluster_name: string | null;
  source_name: string;
  target_name: string | null;
  state: MigrationState;
  state_reason: string;
  rollback: string;
  transport: string;
  options: MigrationOptions;
  progress: MigrationProgress | Record<string, never>;
  result: MigrationResult;
  cancel_requested: boolean;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
}

/** A migration with the host ids the orchestrator needs. */
export interface MigrationRecord extends Migration {
  sourceHostId: string;
  /** The target host of a migration inside this cluster; null for one to another cluster. */
  targetHostId: string | null;
  /** The destination cluster's id when the migration leaves this cluster. */
  targetClusterId: string | null;
  options: MigrationOptions;
  /** The W3C traceparent of the request that asked for it (null: not traced). */
  traceParent: string | null;
}

const SELECT = `
  SELECT m.*, s.name AS source_name, COALESCE(t.name, m.target_host_name) AS target_name
  FROM migrations m JOIN hosts s ON s.id = m.source_host_id LEFT JOIN hosts t ON t.id = m.target_host_id`;

const iso = (d: Date | null) => (d ? new Date(d).toISOString() : null);

function toMigration(r: MigrationRow): MigrationRecord {
  return {
    id: r.id,
    vm: r.vm_name,
    vmId: r.vm_id,
    sourceHost: r.source_name,
    targetHost: r.target_name ?? "",
    targetCluster: r.target_cluster_name,
    sourceHostId: r.source_host_id,
    targetHostId: r.target_host_id,
    targetClusterId: r.target_cluster_id,
    state: r.state,
    stateReason: r.state_reason,
    rollback: r.rollback,
    transport: r.transport,
    options: r.options,
    progress: r.progress,
    result: r.result,
    cancelRequested: r.cancel_requested,
    createdAt: new Date(r.created_at).toISOString(),
    startedAt: iso(r.started_at),
    finishedAt: iso(r.finished_at),
    traceParent: r.trace_parent,
  };
}

/** Strips internal fields for API output; the trace is given by its id alone. */
export function publicMigration(m: MigrationRecord): Migration {
  const { sourceHostId: _s, targetHostId: _t, targetClusterId: _c, traceParent, ...rest } = m;
  const traceId = traceIdOf(traceParent);
  return { ...rest, ...(traceId ? { traceId } : {}) };
}

/** Migrations, newest first; `activeOnly` (not in a final state of the machine) for the scheduler. */
export async function listMigrations(
  q: ReadQueryable,
  filter: { activeOnly?: boolean; vmId?: string } = {},
): Promise<MigrationRecord[]> {
  const where: string[] = [];
  const params: unknown[] = [];
  if (filter.activeOnly) {
    params.push(ACTIVE_MIGRATION_STATES);
    where.push(`m.state = ANY($${params.length}::text[])`);
  }
  if (filter.vmId) {
    params.push(filter.vmId);
    where.push(`m.vm_id = $${params.length}`);
  }
  const { rows } = await q.query<MigrationRow>(
    `${SELECT}${where.length ? ` WHERE ${where.join(" AND ")}` : ""} ORDER BY m.created_at DESC`,
    params,
  );
  return rows.map(toMigration);
}

/** A migration by id; NOVA_NOT_FOUND otherwise. `forUpdate` locks the row. */
export async function getMigration(
  q: ReadQueryable,
  id: string,
  forUpdate = false,
): Promise<MigrationRecord> {
  const valid = /^[0-9a-f-]{36}$/i.test(id);
  const { rows } = valid
    ? await q.query<MigrationRow>(`${SELECT} WHERE m.id = $1${forUpdate ? " FOR UPDATE OF m" : ""}`, [id])
    : { rows: [] };
  if (!rows[0]) {
    throw new NovaError(
      "NOVA_NOT_FOUND",
      `Migration ${id} not found. List migrations with: novacron migration list`,
      {
        details: { migration: id },
      },
    );
  }
  return toMigration(rows[0]);
}

/** Records a new queued migration and its event. */
export async function insertMigration(
  q: Queryable,
  m: {
    vmId: string;
    vmName: string;
    sourceHostId: string;
    /** A host of this cluster, or a cluster (and maybe a host name there). */
    target: { hostId: string } | { clusterId: string; clusterName: string; hostName: string | null };
    /** The trace the migration's run continues (lib/tracing.ts currentTraceparent). */
    traceParent?: string | null;
    options: MigrationOptions;
    transport: string;
  },
): Promise<{ id: string; event: ClusterEvent }> {
  const id = randomUUID();
  const t = m.target;
  await q.query(
    `INSERT INTO migrations (id, vm_id, vm_name, source_host_id, target_host_id, target_cluster_id, target_cluster_name, target_host_name, state, options, transport, trace_parent)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'queued', $9::jsonb, $10, $11)`,
    [
      id,
      m.vmId,
      m.vmName,
      m.sourceHostId,
      "hostId" in t ? t.hostId : null,
      "clusterId" in t ? t.clusterId : null,
      "clusterId" in t ? t.clusterName : null,
      "clusterId" in t ? t.hostName : null,
      JSON.stringify(m.options),
      m.transport,
      m.traceParent ?? null,
    ],
  );
  const event = await appendEvent(q, {
    type: "migration.created",
    resourceType: "migration",
    resourceId: id,
    data: {
      vm: m.vmName,
      sourceHostId: m.sourceHostId,
      ...("hostId" in t ? { targetHostId: t.hostId } : { targetCluster: t.clusterName }),
    },
  });
  return { id, event };
}

/**
 * Moves a migration to `to` with a reason (and rollback note / result), recording the
 * event. Checked against the state machine and a compare-and-set on `m.state`; a move
 * within the same state (transferring → transferring, the next phase) is allowed only
 * where the machine lists it.
 */
export async function transitionMigration(
  q: Queryable,
  m: MigrationRecord,
  to: MigrationState,
  reason: string,
  extra: { rollback?: string; result?: MigrationResult } = {},
): Promise<ClusterEvent> {
  MIGRATION.assertTransition(`migration ${m.id}`, m.state, to);
  const terminal = MIGRATION.isFinal(to);
  const { rowCount } = await q.query(
    `UPDATE migrations SET state = $2, state_reason = $3, rollback = COALESCE($4, rollback),
       result = COALESCE($5::jsonb, result), updated_at = now(),
       started_at = CASE WHEN $2 = 'preparing' THEN now() ELSE started_at END,
       finished_at = CASE WHEN $6 THEN now() ELSE finished_at END
     WHERE id = $1 AND state = $7`,
    [
      m.id,
      to,
      reason,
      extra.rollback ?? null,
      extra.result ? JSON.stringify(extra.result) : null,
      terminal,
      m.state,
    ],
  );
  if (rowCount === 0) throw stateChanged(MIGRATION.name, `migration ${m.id}`, m.state, to);
  return appendEvent(q, {
    type: "migration.state",
    resourceType: "migration",
    resourceId: m.id,
    data: {
      vm: m.vm,
      from: m.state,
      to,
      reason,
      sourceHost: m.sourceHost,
      targetHost: m.targetHost,
      ...(m.targetCluster ? { targetCluster: m.targetCluster } : {}),
      ...(extra.rollback ? { rollback: extra.rollback } : {}),
      ...(extra.result ? { result: extra.result } : {}),
    },
  });
}

/** Stores the latest progress (not an event: progress goes out on the bus only). */
export async function saveProgress(q: Queryable, id: string, progress: MigrationProgress): Promise<void> {
  await q.query("UPDATE migrations SET progress = $2::jsonb, updated_at = now() WHERE id = $1", [
    id,
    JSON.stringify(progress),
  ]);
}

/** Records how the migration's data travels (the source agent decides "auto"). */
export async function setMigrationTransport(q: Queryable, id: string, transport: string): Promise<void> {
  await q.query("UPDATE migrations SET transport = $2, updated_at = now() WHERE id = $1", [id, transport]);
}

/** Marks a migration for cancellation; the orchestrator acts on it. */
export async function requestCancel(q: Queryable, id: string): Promise<void> {
  await q.query("UPDATE migrations SET cancel_requested = true, updated_at = now() WHERE id = $1", [id]);
}

/** Whether cancellation was requested (read fresh by the orchestrator between steps). */
export async function isCancelRequested(q: ReadQueryable, id: string): Promise<boolean> {
  const { rows } = await q.query<{ c: boolean }>(
    "SELECT cancel_requested AS c FROM migrations WHERE id = $1",
    [id],
  );
  return rows[0]?.c ?? false;
}

/** Moves a VM to another host after switch-over (same generation bump as any action). */
export async function moveVmToHost(q: Queryable, vmId: string, hostId: string): Promise<void> {
  await q.query(
    "UPDATE vms SET host_id = $2, generation = generation + 1, updated_at = now() WHERE id = $1",
    [vmId, hostId],
  );
}

/** A migration to another cluster learns which host there took the VM. */
export async function setMigrationTargetHostName(q: Queryable, id: string, hostName: string): Promise<void> {
  await q.query(
    "UPDATE migrations SET target_host_name = $2, updated_at = now() WHERE id = $1 AND target_host_id IS NULL",
    [id, hostName],
  );
}

/** When each VM last had a migration requested (ms since the epoch), for the rebalancer's cooldown. */
export async function lastMigrationByVm(q: ReadQueryable): Promise<Map<string, number>> {
  const { rows } = await q.query<{ vm_id: string; at: Date }>(
    "SELECT vm_id, max(created_at) AS at FROM migrations WHERE vm_id IS NOT NULL GROUP BY vm_id",
  );
  return new Map(rows.map((r) => [r.vm_id, new Date(r.at).getTime()]));
}

/** The hosts a migration in this cluster came from or went to that ended in the last `ms` (by the database's clock). */
export async function hostsOfMigrationsEndedWithin(q: ReadQueryable, ms: number): Promise<Set<string>> {
  const { rows } = await q.query<{ source_host_id: string; target_host_id: string | null }>(
    `SELECT source_host_id, target_host_id FROM migrations
     WHERE finished_at > now() - ($1::int * interval '1 millisecond')`,
    [ms],
  );
  return new Set(
    rows.flatMap((r) => (r.target_host_id ? [r.source_host_id, r.target_host_id] : [r.source_host_id])),
  );
}
