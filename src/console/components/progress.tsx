/** A migration's progress: the bar, the numbers beside it, and what the bar's share means. */
import type { Migration, MigrationProgress } from "../../api/types/migrations.js";
import { bytes, duration, percent } from "../format.js";

/**
 * How far a migration got, 0..100: disk copied plus memory no longer dirty, out of disk
 * and memory in all. Memory is re-sent as the guest dirties it, so the share can step
 * back between passes; a completed migration is 100.
 */
export function migrationPercent(
  m: Pick<Migration, "state">,
  p: Partial<MigrationProgress> | undefined,
): number {
  if (m.state === "completed") return 100;
  if (!p) return 0;
  const disk = p.diskBytesTotal ?? 0;
  const mem = p.memoryBytesTotal ?? 0;
  const memDone = Math.max(0, mem - (p.memoryBytesRemaining ?? mem));
  return Math.min(99, percent((p.diskBytesDone ?? 0) + memDone, disk + mem));
}

/** An accessible progress bar with its label. */
export function ProgressBar({ value, label }: { value: number; label: string }) {
  return (
    <div className="progress">
      <div
        className="progress-track"
        role="progressbar"
        aria-label={label}
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={value}
      >
        <div className="progress-fill" style={{ width: `${value}%` }} />
      </div>
      <span className="progress-value">{value}%</span>
    </div>
  );
}

/** The figures of a transfer in progress. */
export function ProgressFacts({ p }: { p: Partial<MigrationProgress> }) {
  return (
    <dl className="facts">
      <dt>Phase</dt>
      <dd>{p.phase ?? "—"}</dd>
      <dt>Pass</dt>
      <dd>{p.pass ?? "—"}</dd>
      <dt>Throughput</dt>
      <dd>{p.throughputMbps !== undefined ? `${p.throughputMbps.toFixed(1)} Mbit/s` : "—"}</dd>
      <dt>Disk</dt>
      <dd>
        {bytes(p.diskBytesDone)} of {bytes(p.diskBytesTotal)}
      </dd>
      <dt>Memory left</dt>
      <dd>
        {bytes(p.memoryBytesRemaining)} of {bytes(p.memoryBytesTotal)}
      </dd>
      <dt>Expected downtime</dt>
      <dd>{duration(p.expectedDowntimeMs)}</dd>
      <dt>Transport</dt>
      <dd>
        {p.transport ? `${p.transport.chosen}${p.transport.mode ? ` (${p.transport.mode})` : ""}` : "—"}
      </dd>
    </dl>
  );
}
