/**
 * The hosts table: registration, heartbeats, liveness, cordon, capacity views, and what
 * placement reads of a host besides (site, labels, the operator's weight).
 */
import { randomUUID } from "node:crypto";
import type { HostCapacity, QemuInfo } from "../../api/types/agent.js";
import type { ClusterEvent } from "../../api/types/events.js";
import type { Host } from "../../api/types/hosts.js";
import { NovaError } from "../../lib/errors.js";
import type { DrainState } from "../../states/drain.js";
import type { Queryable, ReadQueryable } from "./db.js";
import { appendEvent } from "./events.js";

interface HostRow {
  id: string;
  name: string;
  agent_url: string;
  cert_serial: string | null;
  cert_fingerprint: string | null;
  cert_not_after: Date | null;
  liveness: "alive" | "dead";
  cordoned: boolean;
  accel: "kvm" | "tcg";
  accel_reason: string;
  vcpus: number;
  memory_mib: number;
  disk_total_bytes: number;
  disk_free_bytes: number;
  agent_version: string;
  qemu: QemuInfo | null;
  registered_at: Date;
  last_heartbeat_at: Date;
  allocated_mib: number;
  allocated_vcpus: number;
  vm_count: number;
  site: string | null;
  labels: Record<string, string> | null;
  placement_weight: number;
  drain: { id: string; state: DrainState; cancelRequested: boolean } | null;
}

/** A host as the server keeps it (the API shows the same). */
export type HostRecord = Host;

/** The certificate a host is known by. */
export interface HostCertificate {
  serial: string;
  fingerprint: string;
  notAfter: Date;
}

// Memory is allocated by VMs that hold it (states/vm.ts RESERVING_STATES).
const SELECT_HOSTS = `
  SELECT h.*,
    (COALESCE((SELECT sum(v.memory_mib) FROM vms v WHERE v.host_id = h.id
              AND v.state IN ('scheduled','starting','running','stopping','migrating')), 0)
     -- A migration's target holds the VM's memory from the moment it is prepared.
     + COALESCE((SELECT sum(v.memory_mib) FROM migrations m JOIN vms v ON v.id = m.vm_id
                 WHERE m.target_host_id = h.id AND m.state IN ('queued','preparing','transferring','switching-over')), 0))::int AS allocated_mib,
    -- vCPUs promised, counted the same way (placement's overcommit check).
    (COALESCE((SELECT sum(v.vcpus) FROM vms v WHERE v.host_id = h.id
              AND v.state IN ('scheduled','starting','running','stopping','migrating')), 0)
     + COALESCE((SELECT sum(v.vcpus) FROM migrations m JOIN vms v ON v.id = m.vm_id
                 WHERE m.target_host_id = h.id AND m.state IN ('queued','preparing','transferring','switching-over')), 0))::int AS allocated_vcpus,
    (SELECT count(*) FROM vms v WHERE v.host_id = h.id)::int AS vm_count,
    (SELECT json_build_object('id', d.id, 'state', d.state, 'cancelRequested', d.cancel_requested)
       FROM host_drains d WHERE d.host_id = h.id ORDER BY d.created_at DESC LIMIT 1) AS drain
  FROM hosts h`;

function toHost(row: HostRow): HostRecord {
  return {
    id: row.id,
    name: row.name,
    agentUrl: row.agent_url,
    liveness: row.liveness,
    cordoned: row.cordoned,
    drain: row.drain ?? null,
    accel: row.accel,
    accelReason: row.accel_reason,
    vcpus: row.vcpus,
    memoryMiB: row.memory_mib,
    allocatedMemoryMiB: row.allocated_mib,
    freeMemoryMiB: row.memory_mib - row.allocated_mib,
    allocatedVcpus: row.allocated_vcpus,
    vmCount: row.vm_count,
    diskTotalBytes: Number(row.disk_total_bytes),
    diskFreeBytes: Number(row.disk_free_bytes),
    agentVersion: row.agent_version,
    qemu: row.qemu ?? null,
    site: row.site ?? null,
    labels: row.labels ?? {},
    placementWeight: Number(row.placement_weight),
    certificate:
      row.cert_serial && row.cert_fingerprint && row.cert_not_after
        ? {
            serial: row.cert_serial,
            fingerprint: row.cert_fingerprint,
            notAfter: new Date(row.cert_not_after).toISOString(),
          }
        : null,
    registeredAt: new Date(row.registered_at).toISOString(),
    lastHeartbeatAt: new Date(row.last_heartbeat_at).toISOString(),
  };
}

/** Every host, by name. */
export async function listHosts(q: ReadQueryable): Promise<HostRecord[]> {
  const { rows } = await q.query<HostRow>(`${SELECT_HOSTS} ORDER BY h.name`);
  return rows.map(toHost);
}

/** A host by id or name, or undefined. */
export async function findHost(q: ReadQueryable, idOrName: string): Promise<HostRecord | undefined> {
  const { rows } = await q.query<HostRow>(`${SELECT_HOSTS} WHERE h.name = $1 OR h.id::text = $1`, [idOrName]);
  return rows[0] ? toHost(rows[0]) : undefined;
}

/** A host by id or name; NOVA_NOT_FOUND otherwise. */
export async function getHost(q: ReadQueryable, idOrName: string): Promise<HostRecord> {
  const host = await findHost(q, idOrName);
  if (!host) {
    throw new NovaError("NOVA_NOT_FOUND", `Host ${idOrName} not found. List hosts with: novacron host list`, {
      details: { host: idOrName },
    });
  }
  return host;
}

/**
 * Creates the host or, when its name is known, updates it with its new certificate.
 * `id` is the id to use for a new host (its certificate names it, so it is chosen first);
 * an existing host keeps its own.
 */
export async function upsertHost(
  q: Queryable,
  input: {
    id?: string;
    name: string;
    agentUrl: string;
    certificate: HostCertificate | null;
    agentVersion: string;
    capacity: HostCapacity;
    qemu?: QemuInfo | null;
  },
): Promise<{ id: string; created: boolean }> {
  const c = input.capacity;
  const { rows } = await q.query<{ id: string; created: boolean }>(
    `INSERT INTO hosts (id, name, agent_url, cert_serial, cert_fingerprint, cert_not_after, agent_version, accel,
                        accel_reason, vcpus, memory_mib, disk_total_bytes, disk_free_bytes, qemu, liveness, last_heartbeat_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14::jsonb, 'alive', now())
     ON CONFLICT (name) DO UPDATE SET agent_url = EXCLUDED.agent_url, cert_serial = EXCLUDED.cert_serial,
       cert_fingerprint = EXCLUDED.cert_fingerprint, cert_not_after = EXCLUDED.cert_not_after,
       agent_version = EXCLUDED.agent_version, accel = EXCLUDED.accel, accel_reason = EXCLUDED.accel_reason,
       vcpus = EXCLUDED.vcpus, memory_mib = EXCLUDED.memory_mib, disk_total_bytes = EXCLUDED.disk_total_bytes,
       disk_free_bytes = EXCLUDED.disk_free_bytes, qemu = EXCLUDED.qemu, liveness = 'alive', last_heartbeat_at = now()
     RETURNING id, (xmax = 0) AS created`,
    [
      input.id ?? randomUUID(),
      input.name,
      input.agentUrl,
      input.certificate?.serial ?? null,
      input.certificate?.fingerprint ?? null,
      input.certificate?.notAfter ?? null,
      input.agentVersion,
      c.accel,
      c.accelReason,
      c.vcpus,
      c.memoryMiB,
      c.diskTotalBytes,
      c.diskFreeBytes,
      input.qemu ? JSON.stringify(input.qemu) : null,
    ],
  );
  return rows[0]!;
}

/** The host whose current certificate has this serial (none: unknown, replaced or removed). */
export async function findHostByCertSerial(
  q: ReadQueryable,
  serial: string,
): Promise<HostRecord | undefined> {
  const { rows } = await q.query<HostRow>(`${SELECT_HOSTS} WHERE h.cert_serial = $1`, [serial]);
  return rows[0] ? toHost(rows[0]) : undefined;
}

/**
 * Records a heartbeat; returns the previous liveness so a revival can be announced. A
 * heartbeat without `qemu` (an agent that predates QEMU reporting) keeps what is recorded.
 */
export async function recordHeartbeat(
  q: Queryable,
  hostId: string,
  agentUrl: string,
  c: HostCapacity,
  qemu?: QemuInfo,
): Promise<"alive" | "dead"> {
  const { rows } = await q.query<{ previous: "alive" | "dead" }>(
    `UPDATE hosts h SET agent_url = $2, accel = $3, accel_reason = $4, vcpus = $5, memory_mib = $6,
       disk_total_bytes = $7, disk_free_bytes = $8, qemu = COALESCE($9::jsonb, h.qemu),
       liveness = 'alive', last_heartbeat_at = now()
     FROM (SELECT id, liveness AS previous FROM hosts WHERE id = $1 FOR UPDATE) old
     WHERE h.id = old.id RETURNING old.previous`,
    [
      hostId,
      agentUrl,
      c.accel,
      c.accelReason,
      c.vcpus,
      c.memoryMiB,
      c.diskTotalBytes,
      c.diskFreeBytes,
      qemu ? JSON.stringify(qemu) : null,
    ],
  );
  return rows[0]?.previous ?? "alive";
}

/** Marks alive hosts whose last heartbeat is older than `timeoutMs` dead; returns them. */
export async function markSilentHostsDead(
  q: Queryable,
  timeoutMs: number,
): Promise<{ id: string; name: string; lastHeartbeatAt: string }[]> {
  const { rows } = await q.query<{ id: string; name: string; last_heartbeat_at: Date }>(
    `UPDATE hosts SET liveness = 'dead'
     WHERE liveness = 'alive' AND last_heartbeat_at < now() - ($1::int * interval '1 millisecond')
     RETURNING id, name, last_heartbeat_at`,
    [timeoutMs],
  );
  return rows.map((r) => ({
    id: r.id,
    name: r.name,
    lastHeartbeatAt: new Date(r.last_heartbeat_at).toISOString(),
  }));
}

/**
 * Removes a host from the cluster: its certificate stops being accepted at once. The row
 * goes too, unless migration history names it; then it stays as a dead host with no
 * certificate, and a plain join token may give the name to a new agent.
 */
export async function removeHost(q: Queryable, hostId: string): Promise<{ deleted: boolean }> {
  await q.query(
    `UPDATE hosts SET cert_serial = NULL, cert_fingerprint = NULL, cert_not_after = NULL, liveness = 'dead'
     WHERE id = $1`,
    [hostId],
  );
  const { rowCount } = await q.query(
    `DELETE FROM hosts WHERE id = $1
       AND NOT EXISTS (SELECT 1 FROM migrations WHERE source_host_id = $1 OR target_host_id = $1)`,
    [hostId],
  );
  return { deleted: rowCount > 0 };
}

/** Sets or clears the cordon flag, with its host.cordon event (`by`: what cordoned it, e.g. a drain). */
export async function setCordon(
  q: Queryable,
  host: { id: string; name: string },
  cordoned: boolean,
  by?: string,
): Promise<ClusterEvent> {
  await q.query("UPDATE hosts SET cordoned = $2 WHERE id = $1", [host.id, cordoned]);
  return appendEvent(q, {
    type: "host.cordon",
    resourceType: "host",
    resourceId: host.id,
    data: { name: host.name, cordoned, ...(by ? { by } : {}) },
  });
}

/** A host's labels after setting `set` and removing `remove` (keys), with its host.placement event. */
export async function updateHostLabels(
  q: Queryable,
  host: { id: string; name: string },
  set: Readonly<Record<string, string>>,
  remove: readonly string[],
): Promise<ClusterEvent> {
  // One statement: concurrent label edits of different keys both land.
  const { rows } = await q.query<{ labels: Record<string, string> }>(
    "UPDATE hosts SET labels = (labels || $2::jsonb) - $3::text[] WHERE id = $1 RETURNING labels",
    [host.id, JSON.stringify(set), remove],
  );
  return appendEvent(q, {
    type: "host.placement",
    resourceType: "host",
    resourceId: host.id,
    data: { name: host.name, labels: rows[0]?.labels ?? {} },
  });
}

/** Sets a host's site (null: none) or the operator's weight for it, with its host.placement event. */
export async function updateHostPlacement(
  q: Queryable,
  host: { id: string; name: string },
  change: { site?: string | null; weight?: number },
): Promise<ClusterEvent> {
  if (change.site !== undefined)
    await q.query("UPDATE hosts SET site = $2 WHERE id = $1", [host.id, change.site]);
  if (change.weight !== undefined)
    await q.query("UPDATE hosts SET placement_weight = $2 WHERE id = $1", [host.id, change.weight]);
  return appendEvent(q, {
    type: "host.placement",
    resourceType: "host",
    resourceId: host.id,
    data: { name: host.name, ...change },
  });
}
