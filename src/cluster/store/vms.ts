/**
 * The vms table. Every lifecycle change goes through `transitionVm`, which checks the
 * state machine, bumps timestamps and appends the `vm.state` event in the same
 * transaction, so the API, the SSE stream and the database never disagree.
 */
import { randomUUID } from "node:crypto";
import type { FenceToken } from "../../api/types/agent.js";
import type { ClusterEvent } from "../../api/types/events.js";
import type { Vm } from "../../api/types/vms.js";
import { NovaError } from "../../lib/errors.js";
import { stateChanged } from "../../lib/state-machine.js";
import { assertTransition, VM, type VmState } from "../../states/vm.js";
import type { Queryable, ReadQueryable } from "./db.js";
import { appendEvent } from "./events.js";

interface VmRow {
  id: string;
  name: string;
  image_id: string;
  image_name: string;
  vcpus: number;
  memory_mib: number;
  kernel_args: string;
  machine_type: string | null;
  host_selector: Record<string, string> | null;
  required_site: string | null;
  desired_state: "running" | "stopped" | "deleted";
  state: VmState;
  state_reason: string;
  observed_state: string;
  observed_reason: string;
  observed_generation: number;
  host_id: string | null;
  host_name: string | null;
  generation: number;
  restart_pending: boolean;
  owner_cluster_id: string | null;
  owner_epoch: number;
  ha: "none" | "restart";
  storage_pool_id: string | null;
  storage_pool_name: string | null;
  storage_pool_path: string | null;
  ha_moved_from_host_id: string | null;
  created_at: Date;
  updated_at: Date;
  state_changed_at: Date;
}

/** A VM with the fields the reconciler needs beyond the API view. */
export interface VmRecord extends Vm {
  restartPending: boolean;
  observedGeneration: number;
  /** The cluster that owns the VM; null: this one (docs/federation.md §10). */
  ownerClusterId: string | null;
  /** Counts the VM's owners: 1 where it was created, +1 per hand-off and per HA restart. */
  ownerEpoch: number;
  /** The pool its disk lives in; null: its host's local disk. */
  storagePoolId: string | null;
  /** That pool's directory. */
  storagePoolPath: string | null;
  /** The host an HA restart last took it from (its leftover copy is released there). */
  haMovedFromHostId: string | null;
}

/**
 * The VM's current fencing token, which every request that may run a copy of it carries
 * (agent/fence.ts): its owner (this cluster, `clusterId`, while the row names none) and
 * the epoch of that ownership.
 */
export function vmFence(vm: Pick<VmRecord, "ownerClusterId" | "ownerEpoch">, clusterId: string): FenceToken {
  return { owner: vm.ownerClusterId ?? clusterId, epoch: vm.ownerEpoch };
}

const SELECT_VMS = `
  SELECT v.*, i.name AS image_name, h.name AS host_name, sp.name AS storage_pool_name,
    sp.path AS storage_pool_path
  FROM vms v JOIN images i ON i.id = v.image_id LEFT JOIN hosts h ON h.id = v.host_id
    LEFT JOIN storage_pools sp ON sp.id = v.storage_pool_id`;

function toVm(row: VmRow): VmRecord {
  return {
    id: row.id,
    name: row.name,
    image: row.image_name,
    imageId: row.image_id,
    vcpus: row.vcpus,
    memoryMiB: row.memory_mib,
    kernelArgs: row.kernel_args,
    machineType: row.machine_type ?? null,
    hostSelector: row.host_selector ?? {},
    requiredSite: row.required_site ?? null,
    desiredState: row.desired_state,
    state: row.state,
    stateReason: row.state_reason,
    observedState: row.observed_state,
    observedReason: row.observed_reason,
    host: row.host_name,
    hostId: row.host_id,
    generation: row.generation,
    restartPending: row.restart_pending,
    observedGeneration: row.observed_generation,
    ownerClusterId: row.owner_cluster_id ?? null,
    ownerEpoch: row.owner_epoch,
    ha: row.ha,
    storagePool: row.storage_pool_name ?? null,
    storagePoolId: row.storage_pool_id ?? null,
    storagePoolPath: row.storage_pool_path ?? null,
    haMovedFromHostId: row.ha_moved_from_host_id ?? null,
    createdAt: new Date(row.created_at).toISOString(),
    updatedAt: new Date(row.updated_at).toISOString(),
    stateChangedAt: new Date(row.state_changed_at).toISOString(),
  };
}

/** Strips internal fields for API output. */
export function publicVm(vm: VmRecord): Vm {
  const {
    restartPending: _r,
    observedGeneration: _g,
    ownerClusterId: _o,
    ownerEpoch: _e,
    storagePoolId: _p,
    storagePoolPath: _pp,
    haMovedFromHostId: _m,
    ...rest
  } = vm;
  return rest;
}

/** Every VM, by name. */
export async function listVms(q: ReadQueryable, filter: { hostId?: string } = {}): Promise<VmRecord[]> {
  const { rows } = filter.hostId
    ? await q.query<VmRow>(`${SELECT_VMS} WHERE v.host_id = $1 ORDER BY v.name`, [filter.hostId])
    : await q.query<VmRow>(`${SELECT_VMS} ORDER BY v.name`);
  return rows.map(toVm);
}

/** A VM by id or name, or undefined; `forUpdate` locks its row for the transaction. */
export async function findVm(
  q: ReadQueryable,
  idOrName: string,
  forUpdate = false,
): Promise<VmRecord | undefined> {
  const lock = forUpdate ? " FOR UPDATE OF v" : "";
  const { rows } = await q.query<VmRow>(`${SELECT_VMS} WHERE v.name = $1 OR v.id::text = $1${lock}`, [
    idOrName,
  ]);
  return rows[0] ? toVm(rows[0]) : undefined;
}

/** A VM by id or name; NOVA_NOT_FOUND otherwise. */
export async function getVm(q: ReadQueryable, idOrName: string, forUpdate = false): Promise<VmRecord> {
  const vm = await findVm(q, idOrName, forUpdate);
  if (!vm) {
    throw new NovaError("NOVA_NOT_FOUND", `VM ${idOrName} not found. List VMs with: novacron vm list`, {
      details: { vm: idOrName },
    });
  }
  return vm;
}

/** Fields of a new VM. */
export interface NewVm {
  name: string;
  imageId: string;
  vcpus: number;
  memoryMiB: number;
  kernelArgs: string;
  /** The concrete machine type (pc-q35-X.Y); undefined leaves it to be recorded at first start. */
  machineType?: string;
  desiredState: "running" | "stopped";
  hostId: string;
  state: "scheduled" | "stopped";
  /** Labels its hosts must carry (placement), default none. */
  hostSelector?: Readonly<Record<string, string>>;
  /** The site it must run in, default any. */
  requiredSite?: string | null;
  /** The shared pool its disk lives in (needed for ha restart). */
  storagePoolId?: string;
  ha?: "none" | "restart";
}

/** Inserts a placed VM and its creation event; NOVA_CONFLICT when the name is taken. */
export async function insertVm(q: Queryable, vm: NewVm): Promise<{ id: string; event: ClusterEvent }> {
  const id = randomUUID();
  const { rowCount } = await q.query(
    `INSERT INTO vms (id, name, image_id, vcpus, memory_mib, kernel_args, desired_state, state, host_id, machine_type,
                      host_selector, required_site, storage_pool_id, ha)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12, $13, $14) ON CONFLICT (name) DO NOTHING`,
    [
      id,
      vm.name,
      vm.imageId,
      vm.vcpus,
      vm.memoryMiB,
      vm.kernelArgs,
      vm.desiredState,
      vm.state,
      vm.hostId,
      vm.machineType ?? null,
      JSON.stringify(vm.hostSelector ?? {}),
      vm.requiredSite ?? null,
      vm.storagePoolId ?? null,
      vm.ha ?? "none",
    ],
  );
  if (rowCount === 0) {
    throw new NovaError(
      "NOVA_CONFLICT",
      `A VM named ${vm.name} already exists. Pick another name or delete it first.`,
      {
        details: { vm: vm.name },
      },
    );
  }
  const event = await appendEvent(q, {
    type: "vm.created",
    resourceType: "vm",
    resourceId: id,
    data: {
      name: vm.name,
      state: vm.state,
      hostId: vm.hostId,
      desiredState: vm.desiredState,
      machineType: vm.machineType ?? null,
      ...(vm.storagePoolId ? { storagePoolId: vm.storagePoolId } : {}),
      ...(vm.ha === "restart" ? { ha: "restart" } : {}),
    },
  });
  return { id, event };
}

/**
 * Records the machine type of a VM that has none yet (created before machine types were
 * recorded); returns the type the VM has afterwards, which is the recorded one if another
 * writer got there first. A VM's machine type never changes once set.
 */
export async function recordMachineType(q: Queryable, vmId: string, machineType: string): Promise<string> {
  const { rows } = await q.query<{ machine_type: string }>(
    `UPDATE vms SET machine_type = COALESCE(machine_type, $2) WHERE id = $1 RETURNING machine_type`,
    [vmId, machineType],
  );
  return rows[0]?.machine_type ?? machineType;
}

/** Optional changes that ride along with a state transition. */
export interface TransitionChanges {
  desiredState?: "running" | "stopped" | "deleted";
  restartPending?: boolean;
  bumpGeneration?: boolean;
}

/**
 * Moves a VM to `to` (checked against the state machine) with a reason, appends the
 * `vm.state` event, and returns it. The update is a compare-and-set on `vm.state`: a row
 * that another writer moved first is refused with NOVA_STATE_CHANGED, never overwritten.
 */
export async function transitionVm(
  q: Queryable,
  vm: VmRecord,
  to: VmState,
  reason: string,
  changes: TransitionChanges = {},
): Promise<ClusterEvent> {
  assertTransition(vm.state, to);
  const { rowCount } = await q.query(
    `UPDATE vms SET state = $2, state_reason = $3, updated_at = now(),
       state_changed_at = CASE WHEN state = $2 THEN state_changed_at ELSE now() END,
       desired_state = COALESCE($4, desired_state),
       restart_pending = COALESCE($5, restart_pending),
       generation = generation + $6
     WHERE id = $1 AND state = $7`,
    [
      vm.id,
      to,
      reason,
      changes.desiredState ?? null,
      changes.restartPending ?? null,
      changes.bumpGeneration ? 1 : 0,
      vm.state,
    ],
  );
  if (rowCount === 0) throw stateChanged(VM.name, `VM ${vm.name}`, vm.state, to);
  return appendEvent(q, {
    type: "vm.state",
    resourceType: "vm",
    resourceId: vm.id,
    data: {
      name: vm.name,
      from: vm.state,
      to,
      reason,
      host: vm.host,
      desiredState: changes.desiredState ?? vm.desiredState,
    },
  });
}

/**
 * Records what the agent reports about a VM (not a lifecycle change by itself); returns
 * true when it changed. A report about an older generation than the one recorded is
 * ignored, so a late heartbeat cannot overwrite a newer reply.
 */
export async function setObserved(
  q: Queryable,
  vmId: string,
  observed: string,
  reason: string,
  generation: number,
): Promise<boolean> {
  const { rowCount } = await q.query(
    `UPDATE vms SET observed_state = $2, observed_reason = $3, observed_generation = $4, observed_at = now()
     WHERE id = $1 AND observed_generation <= $4
       AND (observed_state <> $2 OR observed_reason <> $3 OR observed_generation <> $4)`,
    [vmId, observed, reason, generation],
  );
  return rowCount > 0;
}

/** Marks every VM on a host as unknown (the host went silent). */
export async function markHostVmsUnknown(q: Queryable, hostId: string, reason: string): Promise<void> {
  await q.query(
    "UPDATE vms SET observed_state = 'unknown', observed_reason = $2, observed_at = now() WHERE host_id = $1",
    [hostId, reason],
  );
}

/** Removes a deleted VM's row and records the event. */
export async function deleteVmRow(q: Queryable, vm: VmRecord): Promise<ClusterEvent> {
  await q.query("DELETE FROM vms WHERE id = $1", [vm.id]);
  return appendEvent(q, {
    type: "vm.deleted",
    resourceType: "vm",
    resourceId: vm.id,
    data: { name: vm.name, host: vm.host },
  });
}

/** Count of VMs per lifecycle state (for metrics). */
export async function countVmsByState(q: ReadQueryable): Promise<Record<string, number>> {
  const { rows } = await q.query<{ state: string; n: number }>(
    "SELECT state, count(*)::int AS n FROM vms GROUP BY state",
  );
  return Object.fromEntries(rows.map((r) => [r.state, r.n]));
}

/** Sets a VM's HA setting, with its `vm.ha` event. */
export async function setVmHa(q: Queryable, vm: VmRecord, ha: "none" | "restart"): Promise<ClusterEvent> {
  await q.query("UPDATE vms SET ha = $2, updated_at = now() WHERE id = $1", [vm.id, ha]);
  return appendEvent(q, {
    type: "vm.ha",
    resourceType: "vm",
    resourceId: vm.id,
    data: { name: vm.name, ha, previous: vm.ha },
  });
}

/** Sets the reason a VM shows without changing its state (e.g. why an HA restart waits). */
export async function setVmStateReason(q: Queryable, vm: VmRecord, reason: string): Promise<boolean> {
  const { rowCount } = await q.query(
    "UPDATE vms SET state_reason = $2 WHERE id = $1 AND state = $3 AND generation = $4 AND state_reason <> $2",
    [vm.id, reason, vm.state, vm.generation],
  );
  return rowCount > 0;
}

/**
 * An HA restart: moves the VM from its dead host to `toHostId` as `scheduled` (the
 * reconciler starts it there), bumps its generation and its fencing epoch (so a request
 * carrying the old token can no longer run a copy) and remembers the host it left, whose
 * leftover copy is released when its agent reports again. A compare-and-set on the state,
 * host and generation the decision was made on; appends the `vm.state` event.
 */
export async function moveVmForHaRestart(
  q: Queryable,
  vm: VmRecord,
  to: { id: string; name: string },
  reason: string,
): Promise<ClusterEvent> {
  assertTransition(vm.state, "scheduled");
  const { rowCount } = await q.query(
    `UPDATE vms SET state = 'scheduled', state_reason = $3, updated_at = now(), state_changed_at = now(),
       host_id = $2, ha_moved_from_host_id = host_id, owner_epoch = owner_epoch + 1,
       generation = generation + 1, observed_state = 'unknown', observed_reason = ''
     WHERE id = $1 AND state = $4 AND host_id = $5 AND generation = $6`,
    [vm.id, to.id, reason, vm.state, vm.hostId, vm.generation],
  );
  if (rowCount === 0) throw stateChanged(VM.name, `VM ${vm.name}`, vm.state, "scheduled");
  return appendEvent(q, {
    type: "vm.state",
    resourceType: "vm",
    resourceId: vm.id,
    data: {
      name: vm.name,
      from: vm.state,
      to: "scheduled",
      reason,
      host: to.name,
      desiredState: vm.desiredState,
    },
  });
}

/**
 * Of the VMs a host reports, those an HA restart took away from it: its leftover copies,
 * with the token the agent must keep (the newer epoch) before it removes them.
 */
export async function vmsToRelease(
  q: ReadQueryable,
  hostId: string,
  reportedIds: readonly string[],
  clusterId: string,
): Promise<{ id: string; name: string; fence: FenceToken }[]> {
  if (reportedIds.length === 0) return [];
  const { rows } = await q.query<VmRow>(
    `${SELECT_VMS} WHERE v.id::text = ANY($2::text[]) AND v.ha_moved_from_host_id = $1
       AND v.host_id IS DISTINCT FROM $1`,
    [hostId, reportedIds],
  );
  return rows.map(toVm).map((vm) => ({ id: vm.id, name: vm.name, fence: vmFence(vm, clusterId) }));
}
