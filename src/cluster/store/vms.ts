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
  /** Counts the VM's owners: 1 where it was created, +1 per hand-off. */
  ownerEpoch: number;
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
  SELECT v.*, i.name AS image_name, h.name AS host_name
  FROM vms v JOIN images i ON i.id = v.image_id LEFT JOIN hosts h ON h.id = v.host_id`;

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
    createdAt: new Date(row.created_at).toISOString(),
    updatedAt: new Date(row.updated_at).toISOString(),
    stateChangedAt: new Date(row.state_changed_at).toISOString(),
  };
}

/** Strips internal fields for API output. */
export function publicVm(vm: VmRecord): Vm {
  const { restartPending: _r, observedGeneration: _g, ownerClusterId: _o, ownerEpoch: _e, ...rest } = vm;
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
}

/** Inserts a placed VM and its creation event; NOVA_CONFLICT when the name is taken. */
export async function insertVm(q: Queryable, vm: NewVm): Promise<{ id: string; event: ClusterEvent }> {
  const id = randomUUID();
  const { rowCount } = await q.query(
    `INSERT INTO vms (id, name, image_id, vcpus, memory_mib, kernel_args, desired_state, state, host_id, machine_type,
                      host_selector, required_site)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb, $12) ON CONFLICT (name) DO NOTHING`,
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
