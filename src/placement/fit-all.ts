/**
 * Whether a set of VMs can all be placed on a set of hosts, one after the other, each
 * placement counting the memory the ones before it took (a drain's up-front check). Every
 * choice goes through the normal placement (placeVm), so whatever placement considers —
 * ITP's filters and scorers later — this considers too.
 */
import { isNovaError } from "../lib/errors.js";
import { type PlacementHost, type PlacementRequest, placeVm } from "./most-free-memory.js";

/** The outcome for one VM. */
export type FitResult =
  | { vm: string; host: string }
  | { vm: string; host: null; reason: string; details: Record<string, unknown> };

/** Places `vms` in order on `hosts` (not changed); returns where each went or why it did not fit. */
export function fitAll(hosts: readonly PlacementHost[], vms: readonly PlacementRequest[]): FitResult[] {
  const free = new Map(hosts.map((h) => [h.id, h.freeMemoryMiB]));
  return vms.map((req) => {
    const now = hosts.map((h) => ({ ...h, freeMemoryMiB: free.get(h.id) ?? 0 }));
    try {
      const chosen = placeVm(now, req);
      free.set(chosen.id, (free.get(chosen.id) ?? 0) - req.memoryMiB);
      return { vm: req.vmName, host: chosen.name };
    } catch (err) {
      if (!isNovaError(err, "NOVA_NO_CAPACITY")) throw err;
      return { vm: req.vmName, host: null, reason: err.message, details: err.details ?? {} };
    }
  });
}
