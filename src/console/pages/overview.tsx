/** The overview: clusters, hosts, VMs by state, alerts firing, active migrations and executions. */
import type { Execution } from "../../api/types/executions.js";
import type { Host } from "../../api/types/hosts.js";
import type { Migration } from "../../api/types/migrations.js";
import type { Vm } from "../../api/types/vms.js";
import { ApiError, api } from "../api/client.js";
import { progressOf } from "../api/events.js";
import { AlertsCard } from "../components/alerts-card.js";
import { PageHead, StateBadge } from "../components/feedback.js";
import { migrationPercent, ProgressBar } from "../components/progress.js";
import { useLive } from "../live.js";
import { Link } from "../router.js";
import { ACTIVE_EXECUTION, FINAL_MIGRATION } from "../states.js";
import { useTick } from "../tick.js";

/** A cluster as /v1/federation/clusters lists it (the fields shown here). */
interface ClusterRow {
  id: string;
  name: string;
  self: boolean;
  state: string;
  stale: boolean;
  hosts: number;
  vms: number;
}

interface OverviewData {
  hosts: Host[];
  vms: Vm[];
  migrations: Migration[];
  executions: Execution[] | null;
  clusters: ClusterRow[] | null;
}

/** Resolves to null where this server does not offer the route (no federation or executions). */
async function optional<T>(p: Promise<T>): Promise<T | null> {
  try {
    return await p;
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return null;
    throw err;
  }
}

async function loadOverview(): Promise<OverviewData> {
  const [hosts, vms, migrations, executions, clusters] = await Promise.all([
    api<{ hosts: Host[] }>("GET", "/v1/hosts"),
    api<{ vms: Vm[] }>("GET", "/v1/vms"),
    api<{ migrations: Migration[] }>("GET", "/v1/migrations"),
    optional(api<{ executions: Execution[] }>("GET", "/v1/executions?limit=200")),
    optional(api<{ clusters: ClusterRow[] }>("GET", "/v1/federation/clusters")),
  ]);
  return {
    hosts: hosts.hosts,
    vms: vms.vms,
    migrations: migrations.migrations,
    executions: executions?.executions ?? null,
    clusters: clusters?.clusters ?? null,
  };
}

function countBy<T>(items: readonly T[], key: (t: T) => string): [string, number][] {
  const m = new Map<string, number>();
  for (const i of items) m.set(key(i), (m.get(key(i)) ?? 0) + 1);
  return [...m.entries()].sort((a, b) => a[0].localeCompare(b[0]));
}

/** The overview page. */
export function OverviewPage() {
  const live = useLive(loadOverview, ["vm.", "host.", "migration.", "execution.", "federation.", "image."]);
  const d = live.data;
  const activeMigrations = d?.migrations.filter((m) => !FINAL_MIGRATION.has(m.state)) ?? [];
  const activeExecutions = d?.executions?.filter((e) => ACTIVE_EXECUTION.has(e.state)) ?? [];
  useTick(activeMigrations.length > 0);
  return (
    <>
      <PageHead title="Overview" error={live.error} loading={!d && !live.error} />
      {d ? (
        <div className="grid">
          <section className="card" aria-labelledby="ov-hosts">
            <h2 id="ov-hosts">
              <Link to="/hosts">Hosts</Link>
            </h2>
            <p className="big">{d.hosts.length}</p>
            <ul className="chips" aria-label="Hosts by liveness">
              {countBy(d.hosts, (h) => (h.cordoned ? `${h.liveness}, cordoned` : h.liveness)).map(
                ([k, n]) => (
                  <li key={k}>
                    <StateBadge state={k.split(",")[0]!} /> {k.includes(",") ? "cordoned " : ""}
                    {n}
                  </li>
                ),
              )}
            </ul>
          </section>
          <section className="card" aria-labelledby="ov-vms">
            <h2 id="ov-vms">
              <Link to="/vms">VMs</Link>
            </h2>
            <p className="big">{d.vms.length}</p>
            <ul className="chips" aria-label="VMs by state" data-testid="vms-by-state">
              {countBy(d.vms, (v) => v.state).map(([k, n]) => (
                <li key={k}>
                  <StateBadge state={k} /> {n}
                </li>
              ))}
            </ul>
          </section>
          <AlertsCard />
          <section className="card wide" aria-labelledby="ov-migrations">
            <h2 id="ov-migrations">
              <Link to="/migrations">Active migrations</Link>
            </h2>
            {activeMigrations.length === 0 ? <p className="muted">None.</p> : null}
            <ul className="plain">
              {activeMigrations.map((m) => {
                const samples = progressOf(m.id);
                const p = samples.at(-1)?.progress ?? (m.progress as Migration["progress"] & object);
                return (
                  <li key={m.id}>
                    <Link to={`/migrations/${m.id}`}>
                      {m.vm}: {m.sourceHost} → {m.targetCluster ? `${m.targetCluster}/` : ""}
                      {m.targetHost || "?"}
                    </Link>{" "}
                    <StateBadge state={m.state} />
                    <ProgressBar value={migrationPercent(m, p)} label={`Migration of ${m.vm}`} />
                  </li>
                );
              })}
            </ul>
          </section>
          <section className="card wide" aria-labelledby="ov-executions">
            <h2 id="ov-executions">
              <Link to="/executions">Active executions</Link>
            </h2>
            {d.executions === null ? <p className="muted">This server runs no execution system.</p> : null}
            {d.executions !== null && activeExecutions.length === 0 ? <p className="muted">None.</p> : null}
            <ul className="plain">
              {activeExecutions.map((e) => (
                <li key={e.id}>
                  <Link to={`/executions/${e.id}`}>{e.name}</Link> <StateBadge state={e.state} />
                </li>
              ))}
            </ul>
          </section>
          {d.clusters && d.clusters.length > 1 ? (
            <section className="card wide" aria-labelledby="ov-clusters">
              <h2 id="ov-clusters">Clusters</h2>
              <div className="table-wrap">
                <table className="stack">
                  <thead>
                    <tr>
                      <th scope="col">Cluster</th>
                      <th scope="col">State</th>
                      <th scope="col">Hosts</th>
                      <th scope="col">VMs</th>
                    </tr>
                  </thead>
                  <tbody>
                    {d.clusters.map((c) => (
                      <tr key={c.id}>
                        <th scope="row">
                          {c.name}
                          {c.self ? " (this one)" : ""}
                        </th>
                        <td data-label="State">
                          <StateBadge state={c.stale ? "stale" : c.state} />
                        </td>
                        <td data-label="Hosts">{c.hosts}</td>
                        <td data-label="VMs">{c.vms}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            </section>
          ) : null}
        </div>
      ) : null}
    </>
  );
}
