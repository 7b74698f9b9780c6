/**
 * The migration_samples table: a migration's progress over time, bounded. The executor
 * offers every progress reading; one is kept at most every `sample_every_ms` (1 s at
 * first), and when a migration holds MIGRATION_SAMPLE_CAP samples every second one is
 * deleted and the spacing doubles, so a long migration keeps its whole curve at a coarser
 * grain instead of losing its end (docs/migration.md, "Progress history").
 */
import type { MigrationProgress, MigrationSample } from "../../api/types/migrations.js";
import type { Queryable, ReadQueryable } from "./db.js";
import { getMigration } from "./migrations.js";

/** Most samples one migration keeps; reaching it thins them to half. */
export const MIGRATION_SAMPLE_CAP = 3600;

/** What the table says about a migration's samples so far. */
export interface SamplingState {
  everyMs: number;
  /** When the newest sample was taken (ms since the epoch), null before the first. */
  lastAt: number | null;
  count: number;
}

/** What to do with a reading taken at `now`. */
export type SampleStep =
  | { kind: "skip"; nextAt: number }
  | { kind: "append" }
  | { kind: "thin-then-append"; everyMs: number };

/** How a reading is offered. */
export interface SampleOptions {
  /** Most samples kept before thinning. @defaultValue MIGRATION_SAMPLE_CAP */
  cap?: number;
  /** Keep it even within the spacing (a new phase's first reading). */
  force?: boolean;
}

/** Decides what happens to a reading. Pure. */
export function nextSampleStep(s: SamplingState, now: number, o: SampleOptions = {}): SampleStep {
  const cap = o.cap ?? MIGRATION_SAMPLE_CAP;
  // A clock that went back also waits: samples stay in time order, one per instant.
  const wait = o.force ? 1 : s.everyMs;
  if (s.lastAt !== null && now - s.lastAt < wait) return { kind: "skip", nextAt: s.lastAt + s.everyMs };
  if (s.count >= cap) return { kind: "thin-then-append", everyMs: s.everyMs * 2 };
  return { kind: "append" };
}

/**
 * Offers a reading taken at `at`; returns when the next one is worth offering (the caller
 * may skip readings before it without asking, unless it forces one). Run it in the transaction that saves the
 * progress: the migration's row lock orders concurrent writers.
 */
export async function recordSample(
  tx: Queryable,
  migrationId: string,
  p: MigrationProgress,
  at: Date,
  o: SampleOptions = {},
): Promise<{ recorded: boolean; nextAt: number }> {
  const { rows } = await tx.query<{ every: number; last: Date | null; n: number | string }>(
    `SELECT m.sample_every_ms AS every,
       (SELECT max(at) FROM migration_samples WHERE migration_id = m.id) AS last,
       (SELECT count(*) FROM migration_samples WHERE migration_id = m.id) AS n
     FROM migrations m WHERE m.id = $1 FOR UPDATE`,
    [migrationId],
  );
  const row = rows[0];
  if (!row) return { recorded: false, nextAt: Number.POSITIVE_INFINITY };
  const now = at.getTime();
  const step = nextSampleStep(
    { everyMs: row.every, lastAt: row.last ? new Date(row.last).getTime() : null, count: Number(row.n) },
    now,
    o,
  );
  if (step.kind === "skip") return { recorded: false, nextAt: step.nextAt };
  let everyMs = row.every;
  if (step.kind === "thin-then-append") {
    await tx.query(
      `DELETE FROM migration_samples WHERE migration_id = $1 AND at IN (
         SELECT at FROM (
           SELECT at, row_number() OVER (ORDER BY at) AS rn FROM migration_samples WHERE migration_id = $1
         ) numbered WHERE rn % 2 = 0)`,
      [migrationId],
    );
    await tx.query("UPDATE migrations SET sample_every_ms = $2 WHERE id = $1", [migrationId, step.everyMs]);
    everyMs = step.everyMs;
  }
  const t = p.transport;
  await tx.query(
    `INSERT INTO migration_samples (migration_id, at, phase, pass, memory_bytes_sent, memory_bytes_remaining,
       disk_bytes_done, dirty_bytes_per_second, throughput_mbps, memory_wire_bytes, memory_logical_bytes,
       disk_wire_bytes, disk_logical_bytes)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`,
    [
      migrationId,
      at,
      p.phase,
      p.pass,
      Math.round(p.memoryBytesSent),
      Math.round(p.memoryBytesRemaining),
      Math.round(p.diskBytesDone),
      p.dirtyBytesPerSecond,
      p.throughputMbps,
      t?.wireBytes ?? null,
      t?.logicalBytes ?? null,
      t?.diskWireBytes ?? null,
      t?.diskLogicalBytes ?? null,
    ],
  );
  return { recorded: true, nextAt: now + everyMs };
}

interface SampleRow {
  at: Date;
  phase: string;
  pass: number;
  memory_bytes_sent: number | string;
  memory_bytes_remaining: number | string;
  disk_bytes_done: number | string;
  dirty_bytes_per_second: number;
  throughput_mbps: number;
  memory_wire_bytes: number | string | null;
  memory_logical_bytes: number | string | null;
  disk_wire_bytes: number | string | null;
  disk_logical_bytes: number | string | null;
}

const num = (v: number | string | null): number | null => (v === null ? null : Number(v));

/** A migration's samples, oldest first, and its spacing now; NOVA_NOT_FOUND for an unknown migration. */
export async function listSamples(
  q: ReadQueryable,
  migrationId: string,
): Promise<{ sampleEveryMs: number; samples: MigrationSample[] }> {
  const m = await getMigration(q, migrationId);
  const { rows: every } = await q.query<{ every: number }>(
    "SELECT sample_every_ms AS every FROM migrations WHERE id = $1",
    [m.id],
  );
  const { rows } = await q.query<SampleRow>(
    "SELECT * FROM migration_samples WHERE migration_id = $1 ORDER BY at",
    [m.id],
  );
  return {
    sampleEveryMs: every[0]?.every ?? 1000,
    samples: rows.map((r) => ({
      at: new Date(r.at).toISOString(),
      phase: r.phase,
      pass: r.pass,
      memoryBytesSent: Number(r.memory_bytes_sent),
      memoryBytesRemaining: Number(r.memory_bytes_remaining),
      diskBytesDone: Number(r.disk_bytes_done),
      dirtyBytesPerSecond: r.dirty_bytes_per_second,
      throughputMbps: r.throughput_mbps,
      memoryWireBytes: num(r.memory_wire_bytes),
      memoryLogicalBytes: num(r.memory_logical_bytes),
      diskWireBytes: num(r.disk_wire_bytes),
      diskLogicalBytes: num(r.disk_logical_bytes),
    })),
  };
}
