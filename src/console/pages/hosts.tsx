/**
 * Hosts: capacity, QEMU, liveness, cordon and uncordon. Drain is not offered: the API has
 * no drain route yet (issue 16 lists it; it comes with rebalancing).
 */
import { useState } from "react";
import type { Host } from "../../api/types/hosts.js";
import { api } from "../api/client.js";
import { ActionButton, ErrorNote, PageHead, StateBadge } from "../components/feedback.js";
import { ProgressBar } from "../components/progress.js";
import { bytes, mib, percent } from "../format.js";
import { useLive } from "../live.js";

/** The hosts page. */
export function HostsPage() {
  const live = useLive(() => api<{ hosts: Host[] }>("GET", "/v1/hosts"), ["host.", "vm."]);
  const [actionError, setActionError] = useState<string | null>(null);
  const hosts = live.data?.hosts ?? [];
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
            {hosts.map((h) => (
              <tr key={h.id}>
                <th scope="row">{h.name}</th>
                <td data-label="State">
                  <StateBadge state={h.liveness} /> {h.cordoned ? <StateBadge state="cordoned" /> : null}{" "}
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
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {live.data && hosts.length === 0 ? (
        <p className="muted">No host has joined yet: novacron host join-token NAME, then start its agent.</p>
      ) : null}
    </>
  );
}
