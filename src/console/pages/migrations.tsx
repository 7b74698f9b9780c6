/** Migrations: the history, and one migration with its live progress and bytes chart. */
import type { Migration } from "../../api/types/migrations.js";
import { api } from "../api/client.js";
import { PageHead, StateBadge } from "../components/feedback.js";
import { MigrationCard } from "../components/migration-card.js";
import { duration, time } from "../format.js";
import { useLive } from "../live.js";
import { Link } from "../router.js";

/** The history. */
export function MigrationsPage() {
  const live = useLive(() => api<{ migrations: Migration[] }>("GET", "/v1/migrations"), ["migration."]);
  const list = live.data?.migrations ?? [];
  return (
    <>
      <PageHead title="Migrations" error={live.error} loading={!live.data && !live.error} />
      {live.data && list.length === 0 ? <p className="muted">No migration yet.</p> : null}
      <div className="table-wrap">
        <table className="stack">
          <thead>
            <tr>
              <th scope="col">VM</th>
              <th scope="col">From → to</th>
              <th scope="col">State</th>
              <th scope="col">Transport</th>
              <th scope="col">Started</th>
              <th scope="col">Took</th>
              <th scope="col">Guest paused</th>
            </tr>
          </thead>
          <tbody>
            {list.map((m) => (
              <tr key={m.id}>
                <th scope="row">
                  <Link to={`/migrations/${m.id}`}>{m.vm}</Link>
                </th>
                <td data-label="From → to">
                  {m.sourceHost} → {m.targetCluster ? `${m.targetCluster}/` : ""}
                  {m.targetHost || "?"}
                </td>
                <td data-label="State">
                  <StateBadge state={m.state} />
                </td>
                <td data-label="Transport">{m.transport}</td>
                <td data-label="Started">{time(m.startedAt ?? m.createdAt)}</td>
                <td data-label="Took">{duration(m.result.totalTimeMs)}</td>
                <td data-label="Guest paused">{duration(m.result.guestPauseMs)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}

/** One migration. */
export function MigrationDetailPage({ id }: { id: string }) {
  const live = useLive(
    () => api<Migration>("GET", `/v1/migrations/${encodeURIComponent(id)}`),
    ["migration."],
    id,
  );
  return (
    <>
      <PageHead title="Migration" error={live.error} loading={!live.data && !live.error}>
        <p>
          <Link to="/migrations">← All migrations</Link>
          {live.data?.vmId ? (
            <>
              {" · "}
              <Link to={`/vms/${encodeURIComponent(live.data.vm)}`}>VM {live.data.vm}</Link>
            </>
          ) : null}
        </p>
      </PageHead>
      {live.data ? <MigrationCard m={live.data} chart /> : null}
    </>
  );
}
