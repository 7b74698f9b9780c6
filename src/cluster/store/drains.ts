/**
 * The host_drains and host_drain_vms tables: one row per maintenance drain of a host and
 * one per VM it moves or reports. Every state change is a compare-and-set on the
 * from-state (states/drain.ts) and records its event, which carries the drain's progress
 * to the event stream.
 */
import { randomUUID } from "node:crypto";
import type { HostDrain, HostDrainVm } from "../../api/types/drains.js";
import type { ClusterEvent } from "../../api/types/events.js";
import { NovaError } from "../../lib/errors.js";
import { stateChanged } from "../../lib/state-machine.js";
import { DRAIN, DRAIN_VM, type DrainState, type DrainVmState } from "../../states/drain.js";
import type { Queryable, ReadQueryable } from "./db.js";
import { appendEvent } from "./events.js";

interface DrainRow {
  id: string;
  host_id: string;
  host_name: string;
  state: DrainState;
  state_reason: string;
  concurrency: number;
  cancel_requested: boolean;
  requested_by: string;
  created_at: Date;
  updated_at: Date;
  finished_at: Date | null;
}

interface DrainVmRow {
  drain_id: string;
  vm_id: string | null;
  vm_name: string;
  state: DrainVmState;
  migration_id: string | null;
  target_host_name: string | null;
  code: string | null;
  reason: string;
  position: number;
  attempts: number;
  last_attempt_at: Date | null;
  updated_at: Date;
}

/** A drain as the server keeps it (the API shows the same). */
export type DrainRecord = HostDrain;
/** One VM of a drain. */
export type DrainVmRecord = HostDrainVm;

const iso = (d: Date) => new Date(d).toISOString();

function toEntry(r: DrainVmRow): DrainVmRecord {
  return {
    vm: r.vm_name,
    vmId: r.vm_id,
    state: r.state,
    migrationId: r.migration_id,
    targetHost: r.target_host_name,
    code: r.code,
    reason: r.reason,
    attempts: r.attempts,
    lastAttemptAt: r.last_attempt_at ? iso(r.last_attempt_at) : null,
    updatedAt: iso(r.updated_at),
  };
}

async function withEntries(q: ReadQueryable, rows: DrainRow[]): Promise<DrainRecord[]> {
  if (rows.length === 0) return [];
  const { rows: vmRows } = await q.query<DrainVmRow>(
    "SELECT * FROM host_drain_vms WHERE drain_id = ANY($1::uuid[]) ORDER BY position",
    [rows.map((r) => r.id)],
  );
  return rows.map((r) => ({
    id: r.id,
    hostId: r.host_id,
    host: r.host_name,
    state: r.state,
    stateReason: r.state_reason,
    concurrency: r.concurrency,
    cancelRequested: r.cancel_requested,
    requestedBy: r.requested_by,
    vms: vmRows.filter((v) => v.drain_id === r.id).map(toEntry),
    createdAt: iso(r.created_at),
    updatedAt: iso(r.updated_at),
    finishedAt: r.finished_at ? iso(r.finished_at) : null,
  }));
}

/** A drain by id; NOVA_NOT_FOUND otherwise. */
export async function getDrain(q: ReadQueryable, id: string): Promise<DrainRecord> {
  const { rows } = await q.query<DrainRow>("SELECT * FROM host_drains WHERE id = $1", [id]);
  const [drain] = await withEntries(q, rows);
  if (!drain) throw new NovaError("NOVA_NOT_FOUND", `Drain ${id} not found.`, { details: { drain: id } });
  return drain;
}

/** The host's newest drain (under way or ended), or undefined when it was never drained. */
export async function latestDrainOfHost(q: ReadQueryable, hostId: string): Promise<DrainRecord | undefined> {
  const { rows } = await q.query<DrainRow>(
    "SELECT * FROM host_drains WHERE host_id = $1 ORDER BY created_at DESC LIMIT 1",
    [hostId],
  );
  return (await withEntries(q, rows))[0];
}

/** Drains under way, oldest first (the executor's work list). */
export async function listActiveDrains(q: ReadQueryable): Promise<DrainRecord[]> {
  const { rows } = await q.query<DrainRow>(
    "SELECT * FROM host_drains WHERE state = ANY($1::text[]) ORDER BY created_at",
    [DRAIN.active],
  );
  return withEntries(q, rows);
}

/**
 * Records a new drain of a host with a waiting entry per VM, and its event. The caller
 * holds the host's lock and has checked that no drain of it is under way; the unique index
 * (one `draining` row per host) is the backstop.
 */
export async function insertDrain(
  q: Queryable,
  d: {
    hostId: string;
    hostName: string;
    concurrency: number;
    requestedBy: string;
    vms: readonly { id: string; name: string }[];
  },
): Promise<{ id: string; event: ClusterEvent }> {
  const id = randomUUID();
  await q.query(
    `INSERT INTO host_drains (id, host_id, host_name, state, state_reason, concurrency, requested_by)
     VALUES ($1, $2, $3, 'draining', $4, $5, $6)`,
    [
      id,
      d.hostId,
      d.hostName,
      `moving ${d.vms.length} VM(s) off ${d.hostName}`,
      d.concurrency,
      d.requestedBy,
    ],
  );
  let position = 0;
  for (const vm of d.vms) await insertEntry(q, id, vm, position++);
  const event = await appendEvent(q, {
    type: "drain.created",
    resourceType: "drain",
    resourceId: id,
    data: { hostId: d.hostId, host: d.hostName, concurrency: d.concurrency, vms: d.vms.map((v) => v.name) },
  });
  return { id, event };
}

async function insertEntry(
  q: Queryable,
  drainId: string,
  vm: { id: string; name: string },
  position: number,
) {
  await q.query(
    `INSERT INTO host_drain_vms (drain_id, vm_id, vm_name, state, position) VALUES ($1, $2, $3, 'waiting', $4)`,
    [drainId, vm.id, vm.name, position],
  );
}

/** Adds a waiting entry for a VM that reached the host after the drain began. */
export async function addDrainVm(
  q: Queryable,
  drain: DrainRecord,
  vm: { id: string; name: string },
): Promise<ClusterEvent> {
  const { rows } = await q.query<{ next: number }>(
    "SELECT COALESCE(max(position) + 1, 0)::int AS next FROM host_drain_vms WHERE drain_id = $1",
    [drain.id],
  );
  await insertEntry(q, drain.id, vm, rows[0]?.next ?? 0);
  return appendEvent(q, {
    type: "drain.vm",
    resourceType: "drain",
    resourceId: drain.id,
    data: { hostId: drain.hostId, host: drain.host, vm: vm.name, from: null, to: "waiting", reason: "" },
  });
}

/** What a VM entry's move records beside its state. */
export interface DrainVmChange {
  reason: string;
  migrationId?: string | null;
  targetHost?: string | null;
  code?: string | null;
  /** Counts one more attempt (a move refused for the last time); a move started always counts. */
  countAttempt?: boolean;
}

/**
 * Moves one VM entry to `to`: checked against the machine, a compare-and-set on the
 * entry's state, with its event. Fields not given keep their value.
 */
export async function transitionDrainVm(
  q: Queryable,
  drain: Pick<DrainRecord, "id" | "hostId" | "host">,
  entry: DrainVmRecord,
  to: DrainVmState,
  change: DrainVmChange,
): Promise<ClusterEvent> {
  const subject = `VM ${entry.vm} of drain ${drain.id}`;
  DRAIN_VM.assertTransition(subject, entry.state, to);
  const { rowCount } = await q.query(
    `UPDATE host_drain_vms SET state = $3, reason = $4,
       migration_id = CASE WHEN $5 THEN $6::uuid ELSE migration_id END,
       target_host_name = CASE WHEN $7 THEN $8 ELSE target_host_name END,
       code = CASE WHEN $9 THEN $10 ELSE code END,
       -- Every move started (or adopted) is an attempt.
       attempts = attempts + CASE WHEN $3 = 'moving' OR $12 THEN 1 ELSE 0 END,
       last_attempt_at = CASE WHEN $3 = 'moving' OR $12 THEN now() ELSE last_attempt_at END,
       updated_at = now()
     WHERE drain_id = $1 AND vm_name = $2 AND state = $11`,
    [
      drain.id,
      entry.vm,
      to,
      change.reason,
      change.migrationId !== undefined,
      change.migrationId ?? null,
      change.targetHost !== undefined,
      change.targetHost ?? null,
      change.code !== undefined,
      change.code ?? null,
      entry.state,
      change.countAttempt ?? false,
    ],
  );
  if (rowCount === 0) throw stateChanged(DRAIN_VM.name, subject, entry.state, to);
  await q.query("UPDATE host_drains SET updated_at = now() WHERE id = $1", [drain.id]);
  return appendDrainVmEvent(q, drain, entry.vm, {
    from: entry.state,
    to,
    reason: change.reason,
    migrationId: change.migrationId ?? entry.migrationId,
    targetHost: change.targetHost ?? entry.targetHost,
    code: change.code ?? entry.code,
  });
}

/** The `drain.vm` event of a change to one VM's entry (docs/api.md, "Events"). */
function appendDrainVmEvent(
  q: Queryable,
  drain: Pick<DrainRecord, "id" | "hostId" | "host">,
  vm: string,
  change: Record<string, unknown>,
): Promise<ClusterEvent> {
  return appendEvent(q, {
    type: "drain.vm",
    resourceType: "drain",
    resourceId: drain.id,
    data: { hostId: drain.hostId, host: drain.host, vm, ...change },
  });
}

/**
 * Records a move the migration service refused (the entry stays `waiting`, to be retried
 * after a back-off): one more attempt, now, with the refusal's code and reason. A
 * compare-and-set on the entry's state and attempts, with its event.
 */
export async function recordRefusedMove(
  q: Queryable,
  drain: Pick<DrainRecord, "id" | "hostId" | "host">,
  entry: DrainVmRecord,
  change: { code: string; reason: string },
): Promise<ClusterEvent> {
  const { rowCount } = await q.query(
    `UPDATE host_drain_vms SET attempts = attempts + 1, last_attempt_at = now(), code = $3, reason = $4,
       updated_at = now()
     WHERE drain_id = $1 AND vm_name = $2 AND state = 'waiting' AND attempts = $5`,
    [drain.id, entry.vm, change.code, change.reason, entry.attempts],
  );
  if (rowCount === 0)
    throw stateChanged(DRAIN_VM.name, `VM ${entry.vm} of drain ${drain.id}`, entry.state, "waiting");
  return appendDrainVmEvent(q, drain, entry.vm, {
    from: "waiting",
    to: "waiting",
    reason: change.reason,
    code: change.code,
    attempts: entry.attempts + 1,
  });
}

/** Moves a drain to `to` (checked, compare-and-set on its state) with its event. */
export async function transitionDrain(
  q: Queryable,
  drain: DrainRecord,
  to: DrainState,
  reason: string,
): Promise<ClusterEvent> {
  const subject = `drain ${drain.id} of host ${drain.host}`;
  DRAIN.assertTransition(subject, drain.state, to);
  const { rowCount } = await q.query(
    `UPDATE host_drains SET state = $2, state_reason = $3, updated_at = now(),
       finished_at = CASE WHEN $4 THEN now() ELSE finished_at END
     WHERE id = $1 AND state = $5`,
    [drain.id, to, reason, DRAIN.isFinal(to), drain.state],
  );
  if (rowCount === 0) throw stateChanged(DRAIN.name, subject, drain.state, to);
  return appendEvent(q, {
    type: "drain.state",
    resourceType: "drain",
    resourceId: drain.id,
    data: { hostId: drain.hostId, host: drain.host, from: drain.state, to, reason },
  });
}

/**
 * Asks a drain under way to start no new move (compare-and-set: only while `draining`);
 * returns its event, or undefined when the drain had ended already.
 */
export async function requestDrainCancel(
  q: Queryable,
  drain: DrainRecord,
  by: string,
): Promise<ClusterEvent | undefined> {
  const { rowCount } = await q.query(
    `UPDATE host_drains SET cancel_requested = true, updated_at = now() WHERE id = $1 AND state = 'draining'`,
    [drain.id],
  );
  if (rowCount === 0) return undefined;
  return appendEvent(q, {
    type: "drain.cancel",
    resourceType: "drain",
    resourceId: drain.id,
    data: { hostId: drain.hostId, host: drain.host, by },
  });
}
