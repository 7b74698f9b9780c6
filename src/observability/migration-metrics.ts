/**
 * Migration metrics of the server: how long migrations took, the guest's downtime and the
 * bytes they moved, by transport and outcome, observed once where a run ends
 * (migration/executor.ts calls `ended`); and the migrations in flight by state, read from
 * the store at scrape time so every replica reports the truth.
 */
import { Gauge, Histogram, type Registry } from "prom-client";
import { listMigrations, type MigrationRecord } from "../cluster/store/migrations.js";
import type { Store } from "../cluster/store/store.js";
import { MIGRATION } from "../states/migration.js";

/** What the migration runner reports. */
export interface MigrationObserver {
  /** A migration reached a final state (completed, failed, cancelled). */
  ended(m: MigrationRecord): void;
}

const LABELS = ["transport", "outcome"] as const;
const BYTE_BUCKETS = [2 ** 20, 2 ** 22, 2 ** 24, 2 ** 26, 2 ** 28, 2 ** 30, 2 ** 32, 2 ** 34, 2 ** 36];

/** Registers the migration metrics; the observer goes to the orchestrator. */
export function registerMigrationMetrics(registry: Registry, store: Store): MigrationObserver {
  const registers = [registry];
  const duration = new Histogram({
    name: "novacron_migration_duration_seconds",
    help: "Migrations from start to end, by transport (qemu, dwcp) and outcome (completed, failed, cancelled)",
    labelNames: LABELS,
    buckets: [1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600],
    registers,
  });
  const downtime = new Histogram({
    name: "novacron_migration_downtime_seconds",
    help: "Guest downtime of completed migrations as QEMU reports it, by transport and outcome",
    labelNames: LABELS,
    buckets: [0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5, 10],
    registers,
  });
  const wire = new Histogram({
    name: "novacron_migration_wire_bytes",
    help: "Bytes a migration put on the network (memory and disk; DWCP after dedup and compression), by transport and outcome",
    labelNames: LABELS,
    buckets: BYTE_BUCKETS,
    registers,
  });
  const logical = new Histogram({
    name: "novacron_migration_logical_bytes",
    help: "Bytes of memory and disk a migration moved before any transport encoding, by transport and outcome",
    labelNames: LABELS,
    buckets: BYTE_BUCKETS,
    registers,
  });
  new Gauge({
    name: "novacron_migrations_active",
    help: "Migrations not yet ended, by state (queued, preparing, transferring, switching-over)",
    labelNames: ["state"] as const,
    registers,
    async collect() {
      const active = await listMigrations(store.read, { activeOnly: true });
      for (const state of MIGRATION.active)
        this.set({ state }, active.filter((m) => m.state === state).length);
    },
  });
  return {
    ended(m) {
      const labels = { transport: transportLabel(m.transport), outcome: m.state };
      const figures = migrationFigures(m);
      if (figures.durationS !== null) duration.observe(labels, figures.durationS);
      if (figures.downtimeS !== null) downtime.observe(labels, figures.downtimeS);
      wire.observe(labels, figures.wireBytes);
      logical.observe(labels, figures.logicalBytes);
    },
  };
}

/** The transport label: qemu or dwcp, anything else `other` (bounded cardinality). */
function transportLabel(t: string): string {
  return t === "qemu" || t === "dwcp" ? t : "other";
}

/**
 * What an ended migration measured. DWCP reports both the relayed (logical) and the wire
 * bytes of memory and disk; QEMU's transport sends what it reads, so wire = logical =
 * memory sent + disk mirrored.
 */
export function migrationFigures(m: MigrationRecord): {
  durationS: number | null;
  downtimeS: number | null;
  wireBytes: number;
  logicalBytes: number;
} {
  const started = m.startedAt ?? m.createdAt;
  // The whole run, disk mirror included (QEMU's totalTimeMs covers only its memory stream).
  const durationMs = m.finishedAt
    ? Date.parse(m.finishedAt) - Date.parse(started)
    : (m.result.totalTimeMs ?? null);
  const t = "transport" in m.progress ? m.progress.transport : undefined;
  const qemuBytes = (m.result.memoryBytes ?? 0) + (m.result.diskBytes ?? 0);
  const dwcp = t?.chosen === "dwcp" && t.wireBytes !== undefined;
  return {
    durationS: durationMs === null || durationMs < 0 ? null : durationMs / 1000,
    downtimeS:
      m.state === "completed" && m.result.downtimeMs !== undefined ? m.result.downtimeMs / 1000 : null,
    wireBytes: dwcp ? (t.wireBytes ?? 0) + (t.diskWireBytes ?? 0) : qemuBytes,
    logicalBytes: dwcp ? (t.logicalBytes ?? 0) + (t.diskLogicalBytes ?? 0) : qemuBytes,
  };
}
