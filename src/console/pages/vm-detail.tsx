/**
 * One VM: its state, the power actions, its serial console's tail, live migration with
 * progress, and its migrations with throughput and the downtime breakdown.
 */
import { type FormEvent, useEffect, useState } from "react";
import type { Host } from "../../api/types/hosts.js";
import type { Migration } from "../../api/types/migrations.js";
import type { Vm, VmConsole } from "../../api/types/vms.js";
import { ApiError, api } from "../api/client.js";
import { ActionButton, ErrorNote, messageOf, PageHead, StateBadge } from "../components/feedback.js";
import { MigrationCard } from "../components/migration-card.js";
import { mib, time } from "../format.js";
import { useLive } from "../live.js";
import { Link, navigate } from "../router.js";
import { FINAL_MIGRATION } from "../states.js";

const CONSOLE_LINES = 60;
const CONSOLE_POLL_MS = 2000;

/** The VM page for `name`. */
export function VmDetailPage({ name }: { name: string }) {
  const path = `/v1/vms/${encodeURIComponent(name)}`;
  const vm = useLive(() => api<Vm>("GET", path), ["vm.", "migration.state"], name);
  const migrations = useLive(
    () => api<{ migrations: Migration[] }>("GET", `${path}/migrations`),
    ["migration."],
    name,
  );
  const [actionError, setActionError] = useState<string | null>(null);
  const [confirmDelete, setConfirmDelete] = useState(false);
  const v = vm.data;
  const act = (action: "start" | "stop" | "restart") => () =>
    api("POST", `${path}/${action}`).then(vm.reload);
  const list = migrations.data?.migrations ?? [];
  const active = list.filter((m) => !FINAL_MIGRATION.has(m.state));

  return (
    <>
      <PageHead title={`VM ${name}`} error={vm.error} loading={!v && !vm.error}>
        <p>
          <Link to="/vms">← All VMs</Link>
        </p>
      </PageHead>
      {v ? (
        <>
          <section className="card" aria-labelledby="vm-summary">
            <h2 id="vm-summary">
              State <StateBadge state={v.state} />
            </h2>
            <dl className="facts">
              <dt>Host</dt>
              <dd data-testid="vm-host">{v.host ?? "—"}</dd>
              <dt>Wanted</dt>
              <dd>{v.desiredState}</dd>
              <dt>Why</dt>
              <dd>{v.stateReason || "—"}</dd>
              <dt>Size</dt>
              <dd>
                {v.vcpus} vCPU, {mib(v.memoryMiB)}
              </dd>
              <dt>Image</dt>
              <dd>{v.image}</dd>
              <dt>Machine</dt>
              <dd>{v.machineType ?? "—"}</dd>
              <dt>Since</dt>
              <dd>{time(v.stateChangedAt)}</dd>
            </dl>
            <fieldset className="actions">
              <legend className="sr-only">Power actions</legend>
              <ActionButton label="Start" action={act("start")} onError={setActionError} />
              <ActionButton label="Stop" action={act("stop")} onError={setActionError} />
              <ActionButton label="Restart" action={act("restart")} onError={setActionError} />
              {confirmDelete ? (
                <>
                  <ActionButton
                    label={`Really delete ${name}`}
                    kind="danger"
                    action={() => api("DELETE", path).then(() => navigate("/vms"))}
                    onError={setActionError}
                  />
                  <button type="button" className="btn" onClick={() => setConfirmDelete(false)}>
                    Keep it
                  </button>
                </>
              ) : (
                <button type="button" className="btn danger" onClick={() => setConfirmDelete(true)}>
                  Delete…
                </button>
              )}
            </fieldset>
            <ErrorNote message={actionError} />
          </section>
          <MigrateForm vm={v} disabled={active.length > 0} onStarted={migrations.reload} />
          {list.length > 0 ? (
            <section aria-labelledby="vm-migrations">
              <h2 id="vm-migrations">Migrations</h2>
              <ErrorNote message={migrations.error} />
              {list.slice(0, 5).map((m) => (
                <MigrationCard key={m.id} m={m} />
              ))}
            </section>
          ) : null}
          <ConsoleTail path={path} running={v.state !== "pending" && v.hostId !== null} />
        </>
      ) : null}
    </>
  );
}

function MigrateForm({ vm, disabled, onStarted }: { vm: Vm; disabled: boolean; onStarted: () => void }) {
  const hosts = useLive(() => api<{ hosts: Host[] }>("GET", "/v1/hosts"), ["host."]);
  const [target, setTarget] = useState("");
  const [transport, setTransport] = useState<"auto" | "qemu" | "dwcp">("auto");
  const [bandwidth, setBandwidth] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const candidates = (hosts.data?.hosts ?? []).filter((h) => h.name !== vm.host);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await api("POST", `/v1/vms/${encodeURIComponent(vm.name)}/migrations`, {
        ...(target ? { targetHost: target } : {}),
        options: { transport, ...(bandwidth ? { maxBandwidthMiBps: Number(bandwidth) } : {}) },
      });
      onStarted();
    } catch (err) {
      setError(messageOf(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <section className="card" aria-labelledby="vm-migrate">
      <h2 id="vm-migrate">Live migrate</h2>
      <form onSubmit={submit} className="form-row">
        <label htmlFor="migrate-target">Target host</label>
        <select id="migrate-target" value={target} onChange={(e) => setTarget(e.target.value)}>
          <option value="">Any (the server chooses)</option>
          {candidates.map((h) => (
            <option key={h.id} value={h.name}>
              {h.name}
              {h.liveness !== "alive" ? " (dead)" : h.cordoned ? " (cordoned)" : ""}
            </option>
          ))}
        </select>
        <label htmlFor="migrate-transport">Transport</label>
        <select
          id="migrate-transport"
          value={transport}
          onChange={(e) => setTransport(e.target.value as typeof transport)}
        >
          <option value="auto">auto</option>
          <option value="qemu">QEMU</option>
          <option value="dwcp">DWCP</option>
        </select>
        <label htmlFor="migrate-bandwidth">Bandwidth limit (MiB/s)</label>
        <input
          id="migrate-bandwidth"
          type="number"
          min={1}
          max={100000}
          placeholder="none"
          className="narrow"
          value={bandwidth}
          onChange={(e) => setBandwidth(e.target.value)}
        />
        <button type="submit" className="btn primary" disabled={busy || disabled}>
          Migrate
        </button>
      </form>
      {disabled ? <p className="muted small">A migration of this VM is under way.</p> : null}
      <ErrorNote message={error} />
    </section>
  );
}

function ConsoleTail({ path, running }: { path: string; running: boolean }) {
  const [lines, setLines] = useState<string[]>([]);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    if (!running) return;
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const poll = async () => {
      try {
        const c = await api<VmConsole>("GET", `${path}/console?lines=${CONSOLE_LINES}`);
        if (!stopped) {
          setLines(c.lines);
          setError(null);
        }
      } catch (err) {
        if (!stopped) setError(err instanceof ApiError ? err.message : messageOf(err));
      }
      // Polled only while the page is visible: the console is read from the agent each time.
      if (!stopped) timer = setTimeout(poll, document.hidden ? CONSOLE_POLL_MS * 5 : CONSOLE_POLL_MS);
    };
    void poll();
    return () => {
      stopped = true;
      if (timer) clearTimeout(timer);
    };
  }, [path, running]);
  return (
    <section className="card" aria-labelledby="vm-console">
      <h2 id="vm-console">Serial console (last {CONSOLE_LINES} lines)</h2>
      <ErrorNote message={error} />
      <pre className="console" data-testid="vm-console">
        {running ? lines.join("\n") || "(nothing yet)" : "(no host yet)"}
      </pre>
    </section>
  );
}
