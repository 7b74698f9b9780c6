/**
 * One migration: route, state, the live progress bar and figures, and when done the
 * downtime breakdown, or what a failure or cancel rolled back.
 */

import { useState } from "react";
import type { Migration, MigrationProgress } from "../../api/types/migrations.js";
import { api } from "../api/client.js";
import { progressOf } from "../api/events.js";
import { bytes, duration } from "../format.js";
import { useSampleHistory } from "../history.js";
import { FINAL_MIGRATION } from "../states.js";
import { useTick } from "../tick.js";
import { BytesChart, chartPoints } from "./bytes-chart.js";
import { ActionButton, ErrorNote, StateBadge } from "./feedback.js";
import { migrationPercent, ProgressBar, ProgressFacts } from "./progress.js";

/** The card; `chart` adds the wire/logical bytes chart (stored history + live readings). */
export function MigrationCard({ m, chart = false }: { m: Migration; chart?: boolean }) {
  useTick(!FINAL_MIGRATION.has(m.state));
  const [error, setError] = useState<string | null>(null);
  const samples = progressOf(m.id);
  const p: Partial<MigrationProgress> =
    samples.at(-1)?.progress ?? (m.progress as Partial<MigrationProgress>);
  const done = FINAL_MIGRATION.has(m.state);
  const r = m.result;
  return (
    <article
      className="card migration"
      aria-label={`Migration of ${m.vm} to ${m.targetHost || m.targetCluster}`}
    >
      <h3>
        {m.vm}: {m.sourceHost} → {m.targetCluster ? `${m.targetCluster}/` : ""}
        {m.targetHost || "?"} <StateBadge state={m.state} />
      </h3>
      <ProgressBar value={migrationPercent(m, p)} label={`Migration of ${m.vm}`} />
      {m.stateReason ? <p className="small">{m.stateReason}</p> : null}
      {m.rollback ? <p className="small">Rolled back: {m.rollback}</p> : null}
      {!done ? <ProgressFacts p={p} /> : null}
      {done && m.state === "completed" ? (
        <dl className="facts">
          <dt>Total time</dt>
          <dd>{duration(r.totalTimeMs)}</dd>
          <dt>Guest paused</dt>
          <dd>{duration(r.guestPauseMs)}</dd>
          <dt>Throughput</dt>
          <dd>
            {r.totalTimeMs && (r.memoryBytes || r.diskBytes)
              ? `${((((r.memoryBytes ?? 0) + (r.diskBytes ?? 0)) * 8) / (r.totalTimeMs * 1000)).toFixed(1)} Mbit/s`
              : "—"}
          </dd>
          <dt>Memory sent</dt>
          <dd>{bytes(r.memoryBytes)}</dd>
          <dt>Disk sent</dt>
          <dd>{bytes(r.diskBytes)}</dd>
          <dt>Transport</dt>
          <dd>{m.transport}</dd>
          {r.downtimeBreakdown ? (
            <>
              <dt>Downtime: stopping vCPUs</dt>
              <dd>{duration(r.downtimeBreakdown.stopMs)}</dd>
              <dt>Downtime: finishing the disk mirror</dt>
              <dd>{duration(r.downtimeBreakdown.mirrorFinishMs)}</dd>
              <dt>Downtime: last pages and device state</dt>
              <dd>{duration(r.downtimeBreakdown.finalMs)}</dd>
            </>
          ) : null}
        </dl>
      ) : null}
      {chart ? <HistoryChart id={m.id} finished={done} live={samples} /> : null}
      {!done ? (
        <ActionButton
          label={`Cancel migration of ${m.vm}`}
          kind="danger"
          action={() => api("DELETE", `/v1/migrations/${m.id}`)}
          onError={setError}
        >
          Cancel migration
        </ActionButton>
      ) : null}
      <ErrorNote message={error} />
    </article>
  );
}

/** The bytes chart over the stored history and the live readings after it. */
function HistoryChart({
  id,
  finished,
  live,
}: {
  id: string;
  finished: boolean;
  live: ReturnType<typeof progressOf>;
}) {
  const history = useSampleHistory(id, finished);
  return <BytesChart samples={chartPoints(history, live)} finished={finished} />;
}
