/**
 * The hand-off tables (docs/federation.md §10): `acp_outgoing` (this cluster is the
 * source), `acp_incoming` (the destination), and the VM's owner and epoch. Every state
 * change is a compare-and-set on the from-state and records an event; the signed
 * statements each side made or received are kept with the hand-off, by kind.
 */
import type { SignedStatement, StatementKind } from "../../api/types/acp.js";
import type { ClusterEvent } from "../../api/types/events.js";
import { NovaError } from "../../lib/errors.js";
import { stateChanged } from "../../lib/state-machine.js";
import {
  HANDOFF_SOURCE,
  HANDOFF_TARGET,
  type HandoffSourceState,
  type HandoffTargetState,
} from "../../states/handoff.js";
import type { Queryable, ReadQueryable } from "./db.js";
import { appendEvent } from "./events.js";

/** The statements of a hand-off, by kind (at most one of each). */
export type Statements = Partial<Record<StatementKind, SignedStatement>>;

interface HandoffCommon {
  id: string;
  vmId: string;
  vmName: string;
  /** The epoch the source owned the VM at; the hand-off moves it to fromEpoch + 1. */
  fromEpoch: number;
  reason: string;
  statements: Statements;
  createdAt: string;
  stateChangedAt: string;
  /** When its final state's work was done; null while the loop still visits it. */
  settledAt: string | null;
}

/** This cluster's side of a hand-off it started (the source). */
export interface OutgoingHandoff extends HandoffCommon {
  state: HandoffSourceState;
  migrationId: string | null;
  targetClusterId: string;
}

/** This cluster's side of a hand-off offered to it (the destination). */
export interface IncomingHandoff extends HandoffCommon {
  state: HandoffTargetState;
  sourceClusterId: string;
  hostId: string | null;
}

interface Row {
  id: string;
  vm_id: string;
  vm_name: string;
  from_epoch: number;
  state: string;
  reason: string;
  statements: Statements | string;
  created_at: Date | string;
  state_changed_at: Date | string;
  settled_at: Date | string | null;
}

function iso(v: Date | string): string {
  return v instanceof Date ? v.toISOString() : new Date(v).toISOString();
}

function common(r: Row): HandoffCommon {
  return {
    id: r.id,
    vmId: r.vm_id,
    vmName: r.vm_name,
    fromEpoch: r.from_epoch,
    reason: r.reason,
    statements: typeof r.statements === "string" ? (JSON.parse(r.statements) as Statements) : r.statements,
    createdAt: iso(r.created_at),
    stateChangedAt: iso(r.state_changed_at),
    settledAt: r.settled_at === null ? null : iso(r.settled_at),
  };
}

const OUT_COLUMNS =
  "id, vm_id, vm_name, from_epoch, state, reason, statements, created_at, state_changed_at, settled_at, migration_id, target_cluster_id";
const IN_COLUMNS =
  "id, vm_id, vm_name, from_epoch, state, reason, statements, created_at, state_changed_at, settled_at, source_cluster_id, host_id";

function outgoing(r: Row & { migration_id: string | null; target_cluster_id: string }): OutgoingHandoff {
  return {
    ...common(r),
    state: r.state as HandoffSourceState,
    migrationId: r.migration_id,
    targetClusterId: r.target_cluster_id,
  };
}

function incoming(r: Row & { source_cluster_id: string; host_id: string | null }): IncomingHandoff {
  return {
    ...common(r),
    state: r.state as HandoffTargetState,
    sourceClusterId: r.source_cluster_id,
    hostId: r.host_id,
  };
}

/** Records a new outgoing hand-off in `preparing`, with the signed `prepare`. */
export async function createOutgoing(
  q: Queryable,
  h: {
    id: string;
    vmId: string;
    vmName: string;
    migrationId: string | null;
    targetClusterId: string;
    fromEpoch: number;
    prepare: SignedStatement;
  },
): Promise<ClusterEvent> {
  const { rows } = await q.query<{ id: string }>(
    `SELECT id FROM acp_outgoing WHERE vm_id = $1 AND state IN ('preparing', 'transferring', 'released', 'aborting')`,
    [h.vmId],
  );
  if (rows.length > 0)
    throw new NovaError(
      "NOVA_ACP_OWNER_UNCERTAIN",
      `VM ${h.vmName} is already being handed to another cluster (hand-off ${rows[0]!.id})`,
      { details: { vm: h.vmName, handoff: rows[0]!.id } },
    );
  await q.query(
    `INSERT INTO acp_outgoing (id, vm_id, vm_name, migration_id, target_cluster_id, from_epoch, state, reason, statements)
     VALUES ($1, $2, $3, $4, $5, $6, 'preparing', 'asking the destination to prepare', $7::jsonb)`,
    [
      h.id,
      h.vmId,
      h.vmName,
      h.migrationId,
      h.targetClusterId,
      h.fromEpoch,
      JSON.stringify({ prepare: h.prepare } satisfies Statements),
    ],
  );
  return handoffEvent(q, "source", h.id, h.vmName, null, "preparing", "asking the destination to prepare");
}

/** One outgoing hand-off; `forUpdate` locks its row. NOVA_NOT_FOUND when unknown. */
export async function getOutgoing(q: ReadQueryable, id: string, forUpdate = false): Promise<OutgoingHandoff> {
  const found = await findOutgoing(q, id, forUpdate);
  if (!found) throw new NovaError("NOVA_NOT_FOUND", `No outgoing hand-off ${id}`);
  return found;
}

/** One outgoing hand-off, or undefined. */
export async function findOutgoing(
  q: ReadQueryable,
  id: string,
  forUpdate = false,
): Promise<OutgoingHandoff | undefined> {
  const { rows } = await q.query<Row & { migration_id: string | null; target_cluster_id: string }>(
    `SELECT ${OUT_COLUMNS} FROM acp_outgoing WHERE id = $1${forUpdate ? " FOR UPDATE" : ""}`,
    [id],
  );
  return rows[0] ? outgoing(rows[0]) : undefined;
}

/**
 * How long ago the outgoing hand-off was proposed, by the database's clock (the one that
 * stamped it), in ms; undefined when there is no such hand-off.
 */
export async function outgoingAgeMs(q: ReadQueryable, id: string): Promise<number | undefined> {
  const { rows } = await q.query<{ ms: number | string }>(
    "SELECT (EXTRACT(EPOCH FROM (now() - created_at)) * 1000)::float8 AS ms FROM acp_outgoing WHERE id = $1",
    [id],
  );
  return rows[0] ? Number(rows[0].ms) : undefined;
}

/** Outgoing hand-offs with work left: not settled (a final state's effects may be pending), oldest first. */
export async function listUnsettledOutgoing(q: ReadQueryable): Promise<OutgoingHandoff[]> {
  const { rows } = await q.query<Row & { migration_id: string | null; target_cluster_id: string }>(
    `SELECT ${OUT_COLUMNS} FROM acp_outgoing WHERE settled_at IS NULL ORDER BY created_at, id`,
  );
  return rows.map(outgoing);
}

/** The newest hand-offs of both sides (at most `limit` of each), unsettled ones first. */
export async function listRecentHandoffs(
  q: ReadQueryable,
  limit: number,
): Promise<{ outgoing: OutgoingHandoff[]; incoming: IncomingHandoff[] }> {
  const order = "ORDER BY (settled_at IS NULL) DESC, created_at DESC, id LIMIT $1";
  const out = await q.query<Row & { migration_id: string | null; target_cluster_id: string }>(
    `SELECT ${OUT_COLUMNS} FROM acp_outgoing ${order}`,
    [limit],
  );
  const inc = await q.query<Row & { source_cluster_id: string; host_id: string | null }>(
    `SELECT ${IN_COLUMNS} FROM acp_incoming ${order}`,
    [limit],
  );
  return { outgoing: out.rows.map(outgoing), incoming: inc.rows.map(incoming) };
}

/** Everything a final state calls for is done: the loop stops visiting the hand-off. */
export async function settleHandoff(
  q: Queryable,
  side: "source" | "destination",
  id: string,
  state: string,
): Promise<void> {
  const machine = side === "source" ? HANDOFF_SOURCE : HANDOFF_TARGET;
  if (!(machine.final as readonly string[]).includes(state))
    throw new NovaError("NOVA_INTERNAL", `hand-off ${id} is ${state}: only a final state settles`);
  await q.query(
    `UPDATE ${side === "source" ? "acp_outgoing" : "acp_incoming"} SET settled_at = now() WHERE id = $1 AND state = $2 AND settled_at IS NULL`,
    [id, state],
  );
}

/** The outgoing hand-offs of one VM, newest first. */
export async function listOutgoingOfVm(q: ReadQueryable, vmId: string): Promise<OutgoingHandoff[]> {
  const { rows } = await q.query<Row & { migration_id: string | null; target_cluster_id: string }>(
    `SELECT ${OUT_COLUMNS} FROM acp_outgoing WHERE vm_id = $1 ORDER BY created_at DESC, id`,
    [vmId],
  );
  return rows.map(outgoing);
}

/**
 * Moves an outgoing hand-off `h.state → to` (compare-and-set), adding `statements` to the
 * ones it holds.
 */
export async function transitionOutgoing(
  q: Queryable,
  h: OutgoingHandoff,
  to: HandoffSourceState,
  reason: string,
  statements: Statements = {},
): Promise<ClusterEvent> {
  HANDOFF_SOURCE.assertTransition(`hand-off ${h.id}`, h.state, to);
  const { rowCount } = await q.query(
    `UPDATE acp_outgoing SET state = $2, reason = $3, statements = statements || $4::jsonb, state_changed_at = now()
     WHERE id = $1 AND state = $5`,
    [h.id, to, reason, JSON.stringify(statements), h.state],
  );
  if (rowCount === 0) throw stateChanged(HANDOFF_SOURCE.name, `hand-off ${h.id}`, h.state, to);
  return handoffEvent(q, "source", h.id, h.vmName, h.state, to, reason);
}

/** Keeps a statement received without a state change (a repeated answer, a status). */
export async function addOutgoingStatement(q: Queryable, id: string, s: SignedStatement): Promise<void> {
  await q.query(
    `UPDATE acp_outgoing SET statements = statements || jsonb_build_object($2::text, $3::jsonb) WHERE id = $1`,
    [id, s.kind, JSON.stringify(s)],
  );
}

/**
 * Records an incoming hand-off: `prepared` for a `prepare` (its host chosen), or `aborted`
 * for an `abort` of a hand-off never prepared here (so that a late `prepare` is refused).
 */
export async function createIncoming(
  q: Queryable,
  h: {
    id: string;
    vmId: string;
    vmName: string;
    sourceClusterId: string;
    fromEpoch: number;
    state: HandoffTargetState;
    reason: string;
    hostId: string | null;
    statements: Statements;
  },
): Promise<ClusterEvent> {
  if (!HANDOFF_TARGET.initial.includes(h.state))
    throw new NovaError("NOVA_INTERNAL", `an incoming hand-off cannot start in ${h.state}`);
  await q.query(
    `INSERT INTO acp_incoming (id, vm_id, vm_name, source_cluster_id, from_epoch, state, reason, host_id, statements)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)`,
    [
      h.id,
      h.vmId,
      h.vmName,
      h.sourceClusterId,
      h.fromEpoch,
      h.state,
      h.reason,
      h.hostId,
      JSON.stringify(h.statements),
    ],
  );
  return handoffEvent(q, "destination", h.id, h.vmName, null, h.state, h.reason);
}

/** One incoming hand-off, or undefined; `forUpdate` locks its row. */
export async function findIncoming(
  q: ReadQueryable,
  id: string,
  forUpdate = false,
): Promise<IncomingHandoff | undefined> {
  const { rows } = await q.query<Row & { source_cluster_id: string; host_id: string | null }>(
    `SELECT ${IN_COLUMNS} FROM acp_incoming WHERE id = $1${forUpdate ? " FOR UPDATE" : ""}`,
    [id],
  );
  return rows[0] ? incoming(rows[0]) : undefined;
}

/** Incoming hand-offs with work left (not settled), oldest first. */
export async function listUnsettledIncoming(q: ReadQueryable): Promise<IncomingHandoff[]> {
  const { rows } = await q.query<Row & { source_cluster_id: string; host_id: string | null }>(
    `SELECT ${IN_COLUMNS} FROM acp_incoming WHERE settled_at IS NULL ORDER BY created_at, id`,
  );
  return rows.map(incoming);
}

/** Moves an incoming hand-off `h.state → to` (compare-and-set), adding `statements`. */
export async function transitionIncoming(
  q: Queryable,
  h: IncomingHandoff,
  to: HandoffTargetState,
  reason: string,
  statements: Statements = {},
): Promise<ClusterEvent> {
  HANDOFF_TARGET.assertTransition(`hand-off ${h.id}`, h.state, to);
  const { rowCount } = await q.query(
    `UPDATE acp_incoming SET state = $2, reason = $3, statements = statements || $4::jsonb, state_changed_at = now()
     WHERE id = $1 AND state = $5`,
    [h.id, to, reason, JSON.stringify(statements), h.state],
  );
  if (rowCount === 0) throw stateChanged(HANDOFF_TARGET.name, `hand-off ${h.id}`, h.state, to);
  return handoffEvent(q, "destination", h.id, h.vmName, h.state, to, reason);
}

/** A VM's owner as this cluster's database has it: null = this cluster. */
export interface VmOwnership {
  ownerClusterId: string | null;
  epoch: number;
}

/** The VM's owner and epoch; undefined when this cluster has no row for it. */
export async function vmOwnership(q: ReadQueryable, vmId: string): Promise<VmOwnership | undefined> {
  const { rows } = await q.query<{ owner_cluster_id: string | null; owner_epoch: number }>(
    "SELECT owner_cluster_id, owner_epoch FROM vms WHERE id = $1",
    [vmId],
  );
  const r = rows[0];
  return r ? { ownerClusterId: r.owner_cluster_id, epoch: r.owner_epoch } : undefined;
}

/**
 * Moves a VM's ownership `from → to` (compare-and-set on owner and epoch): epochs only
 * grow, so a stale writer — a second replica, a retried step — changes nothing.
 */
export async function moveVmOwnership(
  q: Queryable,
  vmId: string,
  from: VmOwnership,
  to: VmOwnership,
): Promise<void> {
  if (to.epoch <= from.epoch)
    throw new NovaError(
      "NOVA_INTERNAL",
      `VM ${vmId}: an owner epoch only grows (${from.epoch} → ${to.epoch})`,
    );
  const { rowCount } = await q.query(
    `UPDATE vms SET owner_cluster_id = $2, owner_epoch = $3, updated_at = now()
     WHERE id = $1 AND owner_epoch = $4 AND owner_cluster_id IS NOT DISTINCT FROM $5`,
    [vmId, to.ownerClusterId, to.epoch, from.epoch, from.ownerClusterId],
  );
  if (rowCount === 0)
    throw new NovaError(
      "NOVA_STATE_CHANGED",
      `VM ${vmId} is no longer owned by ${from.ownerClusterId ?? "this cluster"} at epoch ${from.epoch}; reload and retry`,
      { details: { vm: vmId, expected: from } },
    );
}

function handoffEvent(
  q: Queryable,
  side: "source" | "destination",
  id: string,
  vm: string,
  from: string | null,
  to: string,
  reason: string,
): Promise<ClusterEvent> {
  return appendEvent(q, {
    type: "acp.handoff",
    resourceType: "handoff",
    resourceId: id,
    data: { side, vm, from, to, reason },
  });
}

/** A VM offered by another cluster, as the destination records it while it arrives. */
export interface ArrivingVm {
  id: string;
  name: string;
  imageId: string;
  vcpus: number;
  memoryMiB: number;
  kernelArgs: string;
  machineType: string | null;
  hostId: string;
  /** The source cluster, the owner until the hand-off commits here. */
  ownerClusterId: string;
  ownerEpoch: number;
}

/**
 * Records an arriving VM (state `arriving`, owned by the source): NOVA_FED_NAME_CLASH when
 * a VM of that name exists here, NOVA_ACP_PROTOCOL when one with its id does.
 */
export async function insertArrivingVm(q: Queryable, vm: ArrivingVm): Promise<ClusterEvent> {
  await assertVmCanArrive(q, vm.id, vm.name);
  await q.query(
    `INSERT INTO vms (id, name, image_id, vcpus, memory_mib, kernel_args, desired_state, state, state_reason, host_id, machine_type, owner_cluster_id, owner_epoch)
     VALUES ($1, $2, $3, $4, $5, $6, 'running', 'arriving', 'a paused copy waits for the hand-off', $7, $8, $9, $10)`,
    [
      vm.id,
      vm.name,
      vm.imageId,
      vm.vcpus,
      vm.memoryMiB,
      vm.kernelArgs,
      vm.hostId,
      vm.machineType,
      vm.ownerClusterId,
      vm.ownerEpoch,
    ],
  );
  return vmStateEvent(q, vm.id, vm.name, null, "arriving", "a paused copy waits for the hand-off");
}

/** NOVA_FED_NAME_CLASH when a VM of that name exists here, NOVA_ACP_PROTOCOL when one with its id does. */
export async function assertVmCanArrive(q: ReadQueryable, id: string, name: string): Promise<void> {
  const { rows } = await q.query<{ id: string; name: string }>(
    "SELECT id, name FROM vms WHERE id = $1 OR name = $2",
    [id, name],
  );
  if (rows.some((r) => r.id === id))
    throw new NovaError(
      "NOVA_ACP_PROTOCOL",
      `This cluster already has VM ${id}; it cannot arrive here again`,
    );
  if (rows.length > 0)
    throw new NovaError(
      "NOVA_FED_NAME_CLASH",
      `A VM named ${name} already exists in the destination cluster; rename or delete one of them first`,
      { details: { vm: name } },
    );
}

/**
 * The hand-off committed here: the arriving VM becomes this cluster's at the next epoch
 * (a compare-and-set on state and owner). It stays `arriving` until its copy runs.
 */
export async function takeArrivingVm(
  q: Queryable,
  vmId: string,
  from: { ownerClusterId: string; epoch: number },
): Promise<void> {
  const { rowCount } = await q.query(
    `UPDATE vms SET owner_cluster_id = NULL, owner_epoch = $2 + 1, updated_at = now()
     WHERE id = $1 AND state = 'arriving' AND owner_cluster_id = $3 AND owner_epoch = $2`,
    [vmId, from.epoch, from.ownerClusterId],
  );
  if (rowCount === 0)
    throw new NovaError(
      "NOVA_STATE_CHANGED",
      `VM ${vmId} is no longer arriving from ${from.ownerClusterId} at epoch ${from.epoch}`,
    );
}

/** The arrived VM's copy runs here: it is `running`, this cluster's like any other. */
export async function arrivedVmRuns(q: Queryable, vmId: string, reason: string): Promise<ClusterEvent> {
  const { rows } = await q.query<{ name: string }>(
    `UPDATE vms SET state = 'running', state_reason = $2, updated_at = now(), state_changed_at = now()
     WHERE id = $1 AND state = 'arriving' AND owner_cluster_id IS NULL
     RETURNING name`,
    [vmId, reason],
  );
  if (rows.length === 0)
    throw new NovaError("NOVA_STATE_CHANGED", `VM ${vmId} is not an arrived VM of this cluster`);
  return vmStateEvent(q, vmId, rows[0]!.name, "arriving", "running", reason);
}

/** Forgets an arriving VM whose hand-off was called off or given back; false if none. */
export async function dropArrivingVm(
  q: Queryable,
  vmId: string,
  reason: string,
): Promise<ClusterEvent | undefined> {
  const { rows } = await q.query<{ name: string }>(
    "DELETE FROM vms WHERE id = $1 AND state = 'arriving' RETURNING name",
    [vmId],
  );
  if (rows.length === 0) return undefined;
  return appendEvent(q, {
    type: "vm.deleted",
    resourceType: "vm",
    resourceId: vmId,
    data: { name: rows[0]!.name, reason },
  });
}

function vmStateEvent(
  q: Queryable,
  id: string,
  name: string,
  from: string | null,
  to: string,
  reason: string,
): Promise<ClusterEvent> {
  return appendEvent(q, {
    type: "vm.state",
    resourceType: "vm",
    resourceId: id,
    data: { name, from, to, reason },
  });
}

/**
 * Forgets a VM this cluster handed to `owner` once its copy here is gone: from then on it
 * is only in the global view, as the new owner's. Not while a migration of it is still
 * active (its runner records the end from the row).
 */
export async function dropReleasedVm(
  q: Queryable,
  vmId: string,
  owner: string,
): Promise<"dropped" | "migration-active" | "none"> {
  // Not while its migration is still being recorded as ended: that runner reads the row.
  const busy = await q.query(
    "SELECT 1 FROM migrations WHERE vm_id = $1 AND state IN ('queued', 'preparing', 'transferring', 'switching-over')",
    [vmId],
  );
  if (busy.rows.length > 0) return "migration-active";
  const { rows } = await q.query<{ name: string }>(
    "DELETE FROM vms WHERE id = $1 AND owner_cluster_id = $2 RETURNING name",
    [vmId, owner],
  );
  if (rows.length === 0) return "none";
  await appendEvent(q, {
    type: "vm.deleted",
    resourceType: "vm",
    resourceId: vmId,
    data: { name: rows[0]!.name, reason: "handed to another cluster" },
  });
  return "dropped";
}
