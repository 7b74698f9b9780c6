/**
 * The host_load_samples and rebalancer_settings tables (migration 000014): the CPU each
 * host's VMs used as agents report it, kept as at most one sample per interval per host
 * for an hour, and the rebalancer's one row of settings. Read by the rebalancer
 * (migration/rebalancer.ts) and by placement's load prediction.
 */
import type { HostLoad } from "../../api/types/agent.js";
import { NovaError } from "../../lib/errors.js";
import { DEFAULT_REBALANCE_SETTINGS, type RebalanceSettings } from "../../placement/rebalance-plan.js";
import type { Queryable, ReadQueryable } from "./db.js";

/** How long samples are kept. */
export const LOAD_HISTORY_MS = 3_600_000;

/** One stored sample. */
export interface LoadSample {
  hostId: string;
  at: number;
  cpuCores: number;
  vcpus: number;
  vms: Record<string, number>;
}

/**
 * Stores `load` as a sample of `hostId` unless it has one younger than `everyMs`, and
 * drops its samples older than the history. One statement each; returns whether a sample
 * was stored. A host has one sample per instant (the key is host and time), so a second
 * reading at the same instant is not stored even with `everyMs` 0; PGlite's clock ticks in
 * milliseconds.
 */
export async function recordLoadSample(
  q: Queryable,
  hostId: string,
  vcpus: number,
  load: HostLoad,
  everyMs: number,
): Promise<boolean> {
  const { rows } = await q.query<{ at: Date }>(
    `INSERT INTO host_load_samples (host_id, cpu_cores, vcpus, vm_cpu_cores)
     SELECT $1, $2, $3, $4::jsonb
     WHERE NOT EXISTS (SELECT 1 FROM host_load_samples
                       WHERE host_id = $1 AND at > now() - ($5::int * interval '1 millisecond'))
     ON CONFLICT DO NOTHING RETURNING at`,
    [hostId, load.cpuCores, vcpus, JSON.stringify(load.vms), everyMs],
  );
  if (rows.length === 0) return false;
  await q.query(
    `DELETE FROM host_load_samples WHERE host_id = $1 AND at < now() - ($2::int * interval '1 millisecond')`,
    [hostId, LOAD_HISTORY_MS],
  );
  return true;
}

/** Every host's samples of the last `sinceMs` (by the database's clock), oldest first. */
export async function listLoadSamples(q: ReadQueryable, sinceMs: number): Promise<LoadSample[]> {
  const { rows } = await q.query<{
    host_id: string;
    at: Date;
    cpu_cores: number;
    vcpus: number;
    vm_cpu_cores: Record<string, number>;
  }>(
    `SELECT host_id, at, cpu_cores, vcpus, vm_cpu_cores FROM host_load_samples
     WHERE at > now() - ($1::int * interval '1 millisecond') ORDER BY host_id, at`,
    [Math.min(sinceMs, LOAD_HISTORY_MS)],
  );
  return rows.map((r) => ({
    hostId: r.host_id,
    at: r.at.getTime(),
    cpuCores: Number(r.cpu_cores),
    vcpus: r.vcpus,
    vms: r.vm_cpu_cores,
  }));
}

/**
 * Each host's predicted utilization for placement (ITP's `predictedLoad`): the mean of its
 * samples of the last `windowMs`, each weighted by recency (half-life `halfLifeMs`), so a
 * host that has just become busy counts as busy soon and one busy long ago barely; clamped
 * to 0..1. One row per host with samples, computed in the database: placement runs on
 * every create and move and must not read every sample.
 */
export async function predictedUtilizations(
  q: ReadQueryable,
  windowMs = 600_000,
  halfLifeMs = 120_000,
): Promise<Map<string, number>> {
  const { rows } = await q.query<{ host_id: string; u: number }>(
    `SELECT host_id,
            LEAST(1, GREATEST(0, sum(w * cpu_cores / vcpus) / sum(w)))::float8 AS u
     FROM (SELECT host_id, cpu_cores, vcpus,
                  power(0.5, GREATEST(0, extract(epoch FROM now() - at) * 1000) / $2::float8) AS w
           FROM host_load_samples
           WHERE at > now() - ($1::int * interval '1 millisecond')) s
     GROUP BY host_id`,
    [Math.min(windowMs, LOAD_HISTORY_MS), halfLifeMs],
  );
  return new Map(rows.map((r) => [r.host_id, Number(r.u)]));
}

/** The database's clock, in ms: the samples' times are its, so their ages are measured by it. */
export async function databaseNow(q: ReadQueryable): Promise<number> {
  const { rows } = await q.query<{ now: Date }>("SELECT now() AS now");
  return rows[0]!.now.getTime();
}

/** The stored settings (with who changed them last). */
export interface StoredRebalanceSettings extends RebalanceSettings {
  updatedBy: string;
  updatedAt: string;
}

const COLUMNS: Record<Exclude<keyof RebalanceSettings, "enabled">, string> = {
  threshold: "threshold",
  minUtilization: "min_utilization",
  holdMs: "hold_ms",
  margin: "margin",
  cooldownMs: "cooldown_ms",
  maxPerHost: "max_per_host",
  maxPerCluster: "max_per_cluster",
  windowMs: "window_ms",
};

type SettingsRow = {
  enabled: boolean;
  threshold: number;
  min_utilization: number;
  hold_ms: number;
  margin: number;
  cooldown_ms: number;
  max_per_host: number;
  max_per_cluster: number;
  window_ms: number;
  updated_by: string;
  updated_at: Date;
};

const toSettings = (r: SettingsRow): StoredRebalanceSettings => ({
  enabled: r.enabled,
  // real columns come back as 4-byte floats: 0.25 stays 0.25, 0.1 becomes 0.100000001…
  threshold: Math.round(Number(r.threshold) * 1e6) / 1e6,
  minUtilization: Math.round(Number(r.min_utilization) * 1e6) / 1e6,
  holdMs: r.hold_ms,
  margin: Math.round(Number(r.margin) * 1e6) / 1e6,
  cooldownMs: r.cooldown_ms,
  maxPerHost: r.max_per_host,
  maxPerCluster: r.max_per_cluster,
  windowMs: r.window_ms,
  updatedBy: r.updated_by,
  updatedAt: r.updated_at.toISOString(),
});

/** The rebalancer's settings (the defaults if an operator never changed them). */
export async function getRebalanceSettings(q: ReadQueryable): Promise<StoredRebalanceSettings> {
  const { rows } = await q.query<SettingsRow>("SELECT * FROM rebalancer_settings WHERE id = 1");
  if (!rows[0]) return { ...DEFAULT_REBALANCE_SETTINGS, updatedBy: "", updatedAt: new Date(0).toISOString() };
  return toSettings(rows[0]);
}

/**
 * Changes the given settings and leaves the others as they are; the database's checks
 * refuse out-of-range values (the service checks them first, with a message).
 */
export async function updateRebalanceSettings(
  q: Queryable,
  change: Partial<RebalanceSettings>,
  by: string,
): Promise<StoredRebalanceSettings> {
  const sets: string[] = ["updated_by = $1", "updated_at = now()"];
  const params: unknown[] = [by];
  if (change.enabled !== undefined) {
    params.push(change.enabled);
    sets.push(`enabled = $${params.length}`);
  }
  for (const [key, column] of Object.entries(COLUMNS) as [keyof typeof COLUMNS, string][]) {
    const value = change[key];
    if (value === undefined) continue;
    params.push(value);
    sets.push(`${column} = $${params.length}`);
  }
  const { rows } = await q.query<SettingsRow>(
    `UPDATE rebalancer_settings SET ${sets.join(", ")} WHERE id = 1 RETURNING *`,
    params,
  );
  if (!rows[0]) throw new NovaError("NOVA_INTERNAL", "the rebalancer's settings row is missing");
  return toSettings(rows[0]);
}
