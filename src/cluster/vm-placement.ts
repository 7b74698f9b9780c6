/**
 * The one call the cluster makes to choose a VM's host (create, HA restart). It narrows
 * the hosts to those that can open the VM's disk (a storage pool's hosts) and that it may
 * use (not the host an HA restart leaves), then asks the placement policy. Kept to one
 * function so the policy behind it (most free memory today, ITP next) is swapped in one
 * place.
 */
import { isNovaError, NovaError } from "../lib/errors.js";
import { type PlacementHost, type PlacementRequest, placeVm } from "../placement/most-free-memory.js";

/** Where the VM's disk must be reachable, and hosts to leave out. */
export interface PlacementConstraints {
  /** The VM's disk is in this pool: only its hosts can open it. */
  storagePool?: { name: string; hostIds: readonly string[] };
  /** Hosts not to use (an HA restart leaves the dead host). */
  avoidHostIds?: readonly string[];
}

/** Picks a host for the VM or throws NOVA_NO_CAPACITY naming every host's reason. */
export function placeVmOnHost<H extends PlacementHost>(
  hosts: readonly H[],
  req: PlacementRequest,
  constraints: PlacementConstraints = {},
): H {
  const rejections: { host: string; reason: string }[] = [];
  const allowed = hosts.filter((h) => {
    if (constraints.avoidHostIds?.includes(h.id)) {
      rejections.push({ host: h.name, reason: "the host the VM is leaving" });
      return false;
    }
    if (constraints.storagePool && !constraints.storagePool.hostIds.includes(h.id)) {
      rejections.push({
        host: h.name,
        reason: `does not see storage pool ${constraints.storagePool.name} (its marker file is not readable there)`,
      });
      return false;
    }
    return true;
  });
  try {
    return placeVm(allowed, req) as H;
  } catch (err) {
    if (!isNovaError(err, "NOVA_NO_CAPACITY") || rejections.length === 0) throw err;
    const extra = rejections.map((r) => `${r.host}: ${r.reason}`).join("; ");
    const details = err.details as { rejections?: unknown[] };
    throw new NovaError(
      "NOVA_NO_CAPACITY",
      allowed.length === 0
        ? `No host can run VM ${req.vmName}: ${extra}.`
        : `${err.message} Also left out: ${extra}.`,
      { details: { ...details, rejections: [...(details.rejections ?? []), ...rejections] } },
    );
  }
}
