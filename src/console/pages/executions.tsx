/** Executions: the list, submitting a plan, one execution (approve, reject, cancel, live logs), the DLQ. */
import { type FormEvent, useEffect, useState } from "react";
import type { DlqEntry, Execution, ExecutionLogLine, ExecutionLogs } from "../../api/types/executions.js";
import { api } from "../api/client.js";
import { subscribe } from "../api/events.js";
import { ActionButton, ErrorNote, messageOf, PageHead, StateBadge } from "../components/feedback.js";
import { time } from "../format.js";
import { useLive } from "../live.js";
import { Link, navigate } from "../router.js";
import { ACTIVE_EXECUTION } from "../states.js";

const EXAMPLE_PLAN = `{
  "name": "a pause, approved first",
  "approval": "required",
  "steps": [{ "kind": "wait", "seconds": 2 }]
}`;
const MAX_LOG_LINES = 2000;

/** The list, the submit form and the DLQ. */
export function ExecutionsPage() {
  const live = useLive(
    () => api<{ executions: Execution[] }>("GET", "/v1/executions?limit=200"),
    ["execution."],
  );
  const dlq = useLive(() => api<{ entries: DlqEntry[] }>("GET", "/v1/dlq"), ["execution."]);
  const [plan, setPlan] = useState(EXAMPLE_PLAN);
  const [error, setError] = useState<string | null>(null);
  const [dlqError, setDlqError] = useState<string | null>(null);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    let parsed: unknown;
    try {
      parsed = JSON.parse(plan);
    } catch (err) {
      setError(`The plan is not JSON: ${messageOf(err)}`);
      return;
    }
    try {
      const x = await api<Execution>("POST", "/v1/executions", { plan: parsed });
      navigate(`/executions/${x.id}`);
    } catch (err) {
      setError(messageOf(err));
    }
  };
  return (
    <>
      <PageHead title="Executions" error={live.error} loading={!live.data && !live.error} />
      <details className="card create">
        <summary>Submit a plan</summary>
        <form onSubmit={submit}>
          <label htmlFor="plan-text">Plan (JSON, as docs/executions.md describes)</label>
          <textarea
            id="plan-text"
            rows={8}
            value={plan}
            onChange={(e) => setPlan(e.target.value)}
            spellCheck={false}
          />
          <div className="form-actions">
            <button type="submit" className="btn primary">
              Submit
            </button>
          </div>
        </form>
        <ErrorNote message={error} />
      </details>
      <div className="table-wrap">
        <table className="stack">
          <thead>
            <tr>
              <th scope="col">Execution</th>
              <th scope="col">State</th>
              <th scope="col">Step</th>
              <th scope="col">Created</th>
            </tr>
          </thead>
          <tbody>
            {(live.data?.executions ?? []).map((x) => (
              <tr key={x.id}>
                <th scope="row">
                  <Link to={`/executions/${x.id}`}>{x.name}</Link>
                </th>
                <td data-label="State">
                  <StateBadge state={x.state} />
                </td>
                <td data-label="Step">
                  {Math.min(x.currentStep + 1, x.steps.length)} of {x.steps.length}
                </td>
                <td data-label="Created">{time(x.createdAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <section aria-labelledby="dlq-title">
        <h2 id="dlq-title">Dead-letter queue</h2>
        <ErrorNote message={dlq.error ?? dlqError} />
        {dlq.data && dlq.data.entries.length === 0 ? <p className="muted">Empty.</p> : null}
        <ul className="plain">
          {(dlq.data?.entries ?? []).map((d) => (
            <li key={d.jobId} className="card">
              Job {d.jobId} ({d.queue}){" "}
              {d.executionId ? (
                <Link to={`/executions/${d.executionId}`}>{d.executionName ?? d.executionId}</Link>
              ) : null}{" "}
              after {d.attempts} of {d.maxAttempts} attempts, dead {time(d.deadAt)}
              {d.lastError ? (
                <p className="small">
                  {typeof d.lastError.message === "string"
                    ? d.lastError.message
                    : JSON.stringify(d.lastError)}
                </p>
              ) : null}
              <ActionButton
                label={`Requeue job ${d.jobId}`}
                action={() => api("POST", `/v1/dlq/${d.jobId}/requeue`).then(dlq.reload)}
                onError={setDlqError}
              >
                Requeue
              </ActionButton>
            </li>
          ))}
        </ul>
      </section>
    </>
  );
}

/** One execution: decisions, steps and its log as it grows. */
export function ExecutionDetailPage({ id }: { id: string }) {
  const path = `/v1/executions/${encodeURIComponent(id)}`;
  const live = useLive(() => api<Execution>("GET", path), ["execution."], id);
  const [error, setError] = useState<string | null>(null);
  const [lines, setLines] = useState<ExecutionLogLine[]>([]);
  const x = live.data;
  const running = x ? ACTIVE_EXECUTION.has(x.state) : true;

  useEffect(() => {
    let after = 0;
    let stopped = false;
    let busy = false;
    const fetchMore = async () => {
      if (busy || stopped) return;
      busy = true;
      try {
        const page = await api<ExecutionLogs>("GET", `${path}/logs?after=${after}`);
        after = page.next;
        if (!stopped && page.lines.length > 0)
          setLines((old) => [...old, ...page.lines].slice(-MAX_LOG_LINES));
      } catch {
        // The page's own load reports errors.
      } finally {
        busy = false;
      }
    };
    void fetchMore();
    const unsubscribe = subscribe((e) => {
      if (
        e.type === "resync" ||
        (e.type.startsWith("execution.") && "resourceId" in e && e.resourceId === id)
      )
        void fetchMore();
    });
    return () => {
      stopped = true;
      unsubscribe();
    };
  }, [path, id]);

  const decide = (action: "approve" | "reject" | "cancel" | "retry") => () =>
    api("POST", `${path}/${action}`, {}).then(live.reload);
  return (
    <>
      <PageHead title={`Execution ${x?.name ?? ""}`} error={live.error} loading={!x && !live.error}>
        <p>
          <Link to="/executions">← All executions</Link>
        </p>
      </PageHead>
      {x ? (
        <section className="card" aria-labelledby="x-state">
          <h2 id="x-state">
            State <StateBadge state={x.state} />
          </h2>
          {x.stateReason ? <p>{x.stateReason}</p> : null}
          <fieldset className="actions">
            <legend className="sr-only">Decisions</legend>
            {x.state === "pending_approval" ? (
              <>
                <ActionButton label="Approve" kind="primary" action={decide("approve")} onError={setError} />
                <ActionButton label="Reject" kind="danger" action={decide("reject")} onError={setError} />
              </>
            ) : null}
            {running ? <ActionButton label="Cancel" action={decide("cancel")} onError={setError} /> : null}
            {x.state === "failed" || x.state === "partial" ? (
              <ActionButton label="Retry" action={decide("retry")} onError={setError} />
            ) : null}
          </fieldset>
          <ErrorNote message={error} />
          <ol className="steps">
            {x.steps.map((s) => (
              <li key={s.index}>
                {s.name || s.kind} <StateBadge state={s.state} /> {s.message}
              </li>
            ))}
          </ol>
        </section>
      ) : null}
      <section className="card" aria-labelledby="x-logs">
        <h2 id="x-logs">Log</h2>
        <pre className="console">
          {lines.map((l) => `${time(l.at)} ${l.level} ${l.message}`).join("\n") || "(no lines yet)"}
        </pre>
      </section>
    </>
  );
}
