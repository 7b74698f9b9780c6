/**
 * Hosts: capacity, QEMU, liveness, site and labels, cordon and uncordon, and the maintenance drain: a Drain
 * button per host (confirmed), cancel while it runs, and each drain's live report (per VM:
 * where it went or why it could not move), reloaded from the event stream.
 */
import { useState } from "react";
import type { HostDrain } from "../../api/types/drains.js";
import type { Host } from "../../api/types/hosts.js";
import { api } from "../api/client.js";
import { ActionButton, ErrorNote, PageHead, StateBadge } from "../components/feedback.js";
import { ProgressBar } from "../components/progress.js";
import { bytes, mib, percent, time } from "../format.js";
import { useLive } from "../live.js";

/** The hosts page. */
export function HostsPage() {
  const live = useLive(() => api<{ hosts: Host[] }>("GET", "/v1/hosts"), ["host.", "vm.", "drain."]);
  const [actionError, setActionError] = useState<string | null>(null);
  const [confirmDrain, setConfirmDrain] = useState<string | null>(null);
  const hosts = live.data?.hosts ?? [];
  const drained = hosts.filter((h) => h.drain !== null);
  return (
    <>
      <PageHead title="Hosts" error={live.error} loading={!live.data && !live.error} />
      <ErrorNote message={actionError} />
      <div className="table-wrap">
        <table className="stack">
          <thead>
            <tr>
              <th scope="col">Host</th>
              <th scope="col">State</th>
              <th scope="col">Memory in use</th>
              <th scope="col">vCPUs</th>
              <th scope="col">Disk free</th>
              <th scope="col">VMs</th>
              <th scope="col">QEMU</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {hosts.map((h) => {
              const draining = h.drain?.state === "draining";
              return (
                <tr key={h.id}>
                  <th scope="row">
                    {h.name}
                    {h.site !== null || Object.keys(h.labels).length > 0 ? (
                      // Placement's view of the host: its site and labels (docs/placement.md).
                      <span className="muted small">
                        {" "}
                        {[
                          h.site !== null ? `site ${h.site}` : "",
                          ...Object.entries(h.labels).map(([k, v]) => `${k}=${v}`),
                        ]
                          .filter(Boolean)
                          .join(", ")}
                      </span>
                    ) : null}
                  </th>
                  <td data-label="State">
                    <StateBadge state={h.liveness} /> {h.cordoned ? <StateBadge state="cordoned" /> : null}{" "}
                    {draining ? <StateBadge state="draining" /> : null}{" "}
                    <span className="muted small">{h.accel}</span>
                  </td>
                  <td data-label="Memory in use" className="cell-bar">
                    <ProgressBar
                      value={percent(h.allocatedMemoryMiB, h.memoryMiB)}
                      label={`Memory of ${h.name} in use`}
                    />
                    <span className="small">
                      {mib(h.allocatedMemoryMiB)} of {mib(h.memoryMiB)}
                    </span>
                  </td>
                  <td data-label="vCPUs">{h.vcpus}</td>
                  <td data-label="Disk free">
                    {bytes(h.diskFreeBytes)} of {bytes(h.diskTotalBytes)}
                  </td>
                  <td data-label="VMs">{h.vmCount}</td>
                  <td data-label="QEMU">
                    {h.qemu ? (
                      <>
                        {h.qemu.version}
                        <span className="muted small"> {h.qemu.machineTypes[0] ?? ""}</span>
                      </>
                    ) : (
                      "—"
                    )}
                  </td>
                  <td data-label="Actions">
                    {h.cordoned ? (
                      <ActionButton
                        label={`Uncordon ${h.name}`}
                        action={() => api("POST", `/v1/hosts/${h.id}/uncordon`).then(live.reload)}
                        onError={setActionError}
                        disabled={draining}
                      >
                        Uncordon
                      </ActionButton>
                    ) : (
                      <ActionButton
                        label={`Cordon ${h.name}`}
                        action={() =>
                          api("POST", `/v1/hosts/${h.id}/cordon`, { cordoned: true }).then(live.reload)
                        }
                        onError={setActionError}
                      >
                        Cordon
                      </ActionButton>
                    )}{" "}
                    {draining ? (
                      <ActionButton
                        label={`Cancel the drain of ${h.name}`}
                        action={() => api("DELETE", `/v1/hosts/${h.id}/drain`).then(live.reload)}
                        onError={setActionError}
                        disabled={h.drain?.cancelRequested}
                      >
                        {h.drain?.cancelRequested ? "Cancelling…" : "Cancel drain"}
                      </ActionButton>
                    ) : confirmDrain === h.id ? (
                      <fieldset className="actions inline">
                        <legend className="sr-only">Confirm draining {h.name}</legend>
                        <ActionButton
                          label={`Really drain ${h.name}`}
                          kind="danger"
                          action={() =>
                            api("POST", `/v1/hosts/${h.id}/drain`, {}).then(() => {
                              setConfirmDrain(null);
                              live.reload();
                            })
                          }
                          onError={setActionError}
                        />{" "}
                        <button type="button" className="btn" onClick={() => setConfirmDrain(null)}>
                          Keep it
                        </button>
                      </fieldset>
                    ) : (
                      <button
                        type="button"
                        className="btn"
                        aria-label={`Drain ${h.name}…`}
                        title="Cordon the host and live-migrate its VMs to other hosts"
                        onClick={() => {
                          setActionError(null);
                          setConfirmDrain(h.id);
                        }}
                      >
                        Drain…
                      </button>
                    )}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
      {live.data && hosts.length === 0 ? (
        <p className="muted">No host has joined yet: novacron host join-token NAME, then start its agent.</p>
      ) : null}
      {drained.length > 0 ? (
        <section aria-labelledby="host-drains">
          <h2 id="host-drains">Drains</h2>
          {drained.map((h) => (
            <DrainReport key={h.id} hostId={h.id} hostName={h.name} />
          ))}
        </section>
      ) : null}
    </>
  );
}

/** One host's newest drain: its state, progress, and a line per VM; live from the event stream. */
function DrainReport({ hostId, hostName }: { hostId: string; hostName: string }) {
  const live = useLive(() => api<HostDrain>("GET", `/v1/hosts/${hostId}/drain`), ["drain."], hostId);
  const d = live.data;
  const headingId = `drain-${hostId}`;
  if (!d) return <ErrorNote message={live.error} />;
  const done = d.vms.filter((e) => e.state !== "waiting" && e.state !== "moving").length;
  return (
    <article className="card" aria-labelledby={headingId}>
      <h3 id={headingId}>
        Drain of {hostName}: <StateBadge state={d.state} />
        {d.cancelRequested && d.state === "draining" ? " (cancel requested)" : null}
      </h3>
      <p className="small">
        {d.stateReason}{" "}
        <span className="muted">
          — started {time(d.createdAt)} by {d.requestedBy}
        </span>
      </p>
      {d.state === "draining" ? (
        <ProgressBar value={percent(done, d.vms.length)} label={`VMs of ${hostName} handled`} />
      ) : null}
      <ErrorNote message={live.error} />
      {d.vms.length > 0 ? (
        <div className="table-wrap">
          <table className="stack">
            <caption className="sr-only">Each VM of the drain of {hostName}</caption>
            <thead>
              <tr>
                <th scope="col">VM</th>
                <th scope="col">Result</th>
                <th scope="col">Runs on</th>
                <th scope="col">Why / how</th>
              </tr>
            </thead>
            <tbody>
              {d.vms.map((e) => (
                <tr key={e.vm}>
                  <th scope="row">{e.vm}</th>
                  <td data-label="Result">
                    <StateBadge state={e.state} />
                  </td>
                  <td data-label="Runs on">{e.targetHost ?? (e.state === "moved" ? "?" : hostName)}</td>
                  <td data-label="Why / how" className="small">
                    {e.code ? <code>{e.code}</code> : null} {e.reason}
                    {e.migrationId ? (
                      <span className="muted"> (migration {e.migrationId.slice(0, 8)})</span>
                    ) : null}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : (
        <p className="muted">No VM was on the host.</p>
      )}
    </article>
  );
}
