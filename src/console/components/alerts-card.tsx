/**
 * The overview's alerts: what the Prometheus at the server's --prometheus-url has firing
 * (and pending), each with its runbook. Alerts are not cluster events, so this polls.
 */
import { useEffect, useState } from "react";
import type { AlertsResponse } from "../../api/types/alerts.js";
import { api } from "../api/client.js";
import { Link } from "../router.js";
import { messageOf, StateBadge } from "./feedback.js";

const POLL_MS = 15_000;

/** The alerts card of the overview. */
export function AlertsCard() {
  const [data, setData] = useState<AlertsResponse | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let stopped = false;
    const load = () =>
      api<AlertsResponse>("GET", "/v1/alerts").then(
        (d) => {
          if (stopped) return;
          setData(d);
          setError(null);
        },
        (err: unknown) => {
          if (!stopped) setError(messageOf(err));
        },
      );
    void load();
    const timer = setInterval(load, POLL_MS);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, []);
  const firing = data?.alerts.filter((a) => a.state === "firing").length ?? 0;
  return (
    <section className="card wide" aria-labelledby="ov-alerts" data-testid="alerts">
      <h2 id="ov-alerts">Alerts firing{data?.configured ? `: ${firing}` : ""}</h2>
      {error ? (
        <p className="error" role="alert">
          {error}
        </p>
      ) : null}
      {data && !data.configured ? (
        <p className="muted">
          No Prometheus configured: start the server with <code>--prometheus-url</code> to see the alerts of
          NovaCron's rules (deploy/prometheus/alerts.yml) here.
        </p>
      ) : null}
      {data?.configured && data.alerts.length === 0 ? <p className="muted">None.</p> : null}
      <ul className="plain">
        {data?.alerts.map((a) => (
          <li key={`${a.name}/${JSON.stringify(a.labels)}`} className={`alert alert-${a.severity ?? "none"}`}>
            <StateBadge state={a.state === "firing" ? (a.severity ?? "firing") : "pending"} />{" "}
            <strong>{a.name}</strong>
            {a.summary ? <> — {a.summary}</> : null}
            {a.activeAt ? (
              <span className="muted small"> since {new Date(a.activeAt).toLocaleString()}</span>
            ) : null}
            {a.runbookName ? (
              <>
                {" "}
                <Link to={`/runbooks/${a.runbookName}`}>
                  Runbook<span className="sr-only"> for {a.name}</span>
                </Link>
              </>
            ) : a.runbook ? (
              <span className="small"> runbook: {a.runbook}</span>
            ) : null}
          </li>
        ))}
      </ul>
    </section>
  );
}
