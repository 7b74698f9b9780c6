/**
 * The API's ownership check (docs/federation.md §10): only the cluster that owns a VM acts
 * on it. A VM released to another cluster, or arriving from one, is refused here before
 * its state is even looked at — the agents' fencing tokens refuse it again below.
 */
import { NovaError } from "../lib/errors.js";

/** Throws NOVA_ACP_NOT_OWNER unless this cluster owns `vm`. */
export function assertOwnedHere(
  vm: { name: string; state: string; ownerClusterId: string | null; ownerEpoch: number },
  action: string,
): void {
  if (vm.ownerClusterId === null) return;
  const arriving = vm.state === "arriving";
  throw new NovaError(
    "NOVA_ACP_NOT_OWNER",
    arriving
      ? `Cannot ${action} VM ${vm.name}: it is arriving from another cluster and is not this cluster's until its hand-off ends.`
      : `Cannot ${action} VM ${vm.name}: it was handed to another cluster (${vm.ownerClusterId}) at epoch ${vm.ownerEpoch}; act on it there.`,
    { details: { vm: vm.name, owner: vm.ownerClusterId, epoch: vm.ownerEpoch, action } },
  );
}
