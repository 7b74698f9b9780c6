/**
 * The API's ownership check (docs/federation.md §10): only the cluster that owns a VM acts
 * on it. A VM released to another cluster, or arriving from one, is refused here before
 * its state is even looked at — the agents' fencing tokens refuse it again below.
 */
import { NovaError } from "../lib/errors.js";
import type { ReadQueryable } from "./store/db.js";
import { getPeerById } from "./store/federation.js";

type OwnedVm = { name: string; state: string; ownerClusterId: string | null; ownerEpoch: number };

/** Throws NOVA_ACP_NOT_OWNER unless this cluster owns `vm`; `ownerName` names the owner for people. */
export function assertOwnedHere(vm: OwnedVm, action: string, ownerName?: string): void {
  if (vm.ownerClusterId === null) return;
  const owner = ownerName
    ? `cluster ${ownerName} (${vm.ownerClusterId})`
    : `another cluster (${vm.ownerClusterId})`;
  const arriving = vm.state === "arriving";
  throw new NovaError(
    "NOVA_ACP_NOT_OWNER",
    arriving
      ? `Cannot ${action} VM ${vm.name}: it is arriving from another cluster and is not this cluster's until its hand-off ends.`
      : `Cannot ${action} VM ${vm.name}: it was handed to ${owner} at epoch ${vm.ownerEpoch}; act on it there.`,
    { details: { vm: vm.name, owner: vm.ownerClusterId, epoch: vm.ownerEpoch, action } },
  );
}

/** assertOwnedHere, with the owner named as this cluster knows its peer. */
export async function checkOwnedHere(q: ReadQueryable, vm: OwnedVm, action: string): Promise<void> {
  if (vm.ownerClusterId === null) return;
  const peer = await getPeerById(q, vm.ownerClusterId);
  assertOwnedHere(vm, action, peer?.name);
}
