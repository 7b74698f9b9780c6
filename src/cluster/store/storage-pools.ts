/**
 * The storage_pools table (directories every host mounts, where HA VMs keep their disks)
 * and host_storage_pools (which hosts' agents last reported seeing each pool's marker).
 */
import { randomUUID } from "node:crypto";
import type { ClusterEvent } from "../../api/types/events.js";
import type { StoragePool } from "../../api/types/storage-pools.js";
import { NovaError } from "../../lib/errors.js";
import type { Queryable, ReadQueryable } from "./db.js";
import { appendEvent } from "./events.js";

interface PoolRow {
  id: string;
  name: string;
  path: string;
  created_at: Date;
  host_names: string[] | null;
  host_ids: string[] | null;
  vm_count: number;
}

/** A pool with the hosts that see it. */
export interface StoragePoolRecord extends StoragePool {
  hostIds: string[];
}

const SELECT_POOLS = `
  SELECT p.*,
    (SELECT array_agg(h.name ORDER BY h.name) FROM host_storage_pools hp JOIN hosts h ON h.id = hp.host_id
       WHERE hp.pool_id = p.id) AS host_names,
    (SELECT array_agg(hp.host_id::text) FROM host_storage_pools hp WHERE hp.pool_id = p.id) AS host_ids,
    (SELECT count(*) FROM vms v WHERE v.storage_pool_id = p.id)::int AS vm_count
  FROM storage_pools p`;

function toPool(row: PoolRow): StoragePoolRecord {
  return {
    id: row.id,
    name: row.name,
    path: row.path,
    hosts: row.host_names ?? [],
    hostIds: row.host_ids ?? [],
    vmCount: row.vm_count,
    createdAt: new Date(row.created_at).toISOString(),
  };
}

/** Strips internal fields for API output. */
export function publicPool(p: StoragePoolRecord): StoragePool {
  const { hostIds: _h, ...rest } = p;
  return rest;
}

/** Every pool, by name. */
export async function listStoragePools(q: ReadQueryable): Promise<StoragePoolRecord[]> {
  const { rows } = await q.query<PoolRow>(`${SELECT_POOLS} ORDER BY p.name`);
  return rows.map(toPool);
}

/** A pool by id or name; NOVA_NOT_FOUND naming how to list them otherwise. */
export async function getStoragePool(q: ReadQueryable, idOrName: string): Promise<StoragePoolRecord> {
  const { rows } = await q.query<PoolRow>(`${SELECT_POOLS} WHERE p.name = $1 OR p.id::text = $1`, [idOrName]);
  if (!rows[0]) {
    throw new NovaError(
      "NOVA_NOT_FOUND",
      `Storage pool ${idOrName} not found. List pools with: novacron storage pool list`,
      { details: { storagePool: idOrName } },
    );
  }
  return toPool(rows[0]);
}

/** Inserts a pool and its event; NOVA_CONFLICT when the name is taken. */
export async function insertStoragePool(
  q: Queryable,
  input: { id?: string; name: string; path: string },
): Promise<{ id: string; event: ClusterEvent }> {
  const id = input.id ?? randomUUID();
  const { rowCount } = await q.query(
    "INSERT INTO storage_pools (id, name, path) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
    [id, input.name, input.path],
  );
  if (rowCount === 0) {
    throw new NovaError(
      "NOVA_CONFLICT",
      `A storage pool named ${input.name} already exists. Pick another name or remove it first.`,
      { details: { storagePool: input.name } },
    );
  }
  const event = await appendEvent(q, {
    type: "storage-pool.added",
    resourceType: "storage-pool",
    resourceId: id,
    data: { name: input.name, path: input.path },
  });
  return { id, event };
}

/** Removes a pool no VM keeps its disk in (NOVA_STORAGE_POOL_IN_USE otherwise). */
export async function deleteStoragePool(q: Queryable, pool: StoragePoolRecord): Promise<ClusterEvent> {
  const { rows } = await q.query<{ name: string }>(
    "SELECT name FROM vms WHERE storage_pool_id = $1 ORDER BY name LIMIT 6",
    [pool.id],
  );
  if (rows.length > 0) {
    const names = rows.slice(0, 5).map((r) => r.name);
    throw new NovaError(
      "NOVA_STORAGE_POOL_IN_USE",
      `Storage pool ${pool.name} still holds the disks of VM(s) ${names.join(", ")}${rows.length > 5 ? ", …" : ""}. Delete those VMs first.`,
      { details: { storagePool: pool.name, vms: names } },
    );
  }
  await q.query("DELETE FROM storage_pools WHERE id = $1", [pool.id]);
  return appendEvent(q, {
    type: "storage-pool.removed",
    resourceType: "storage-pool",
    resourceId: pool.id,
    data: { name: pool.name, path: pool.path },
  });
}

/** Records which pools a host's agent sees (their markers read back); others are forgotten. */
export async function syncHostStoragePools(
  q: Queryable,
  hostId: string,
  poolIds: readonly string[],
): Promise<void> {
  await q.query(
    "DELETE FROM host_storage_pools WHERE host_id = $1 AND NOT (pool_id::text = ANY($2::text[]))",
    [hostId, poolIds],
  );
  await q.query(
    `INSERT INTO host_storage_pools (host_id, pool_id)
     SELECT $1, p.id FROM storage_pools p WHERE p.id::text = ANY($2::text[])
     ON CONFLICT (host_id, pool_id) DO UPDATE SET seen_at = now()`,
    [hostId, poolIds],
  );
}
