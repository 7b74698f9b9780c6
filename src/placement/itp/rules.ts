/**
 * Placement groups checked as a whole before one is stored: no hard rules that no
 * placement can satisfy together, and no member that is not a VM. A contradiction is
 * refused with both groups and the VMs they share named, so the operator knows which rule
 * to change.
 */
import { NovaError } from "../../lib/errors.js";
import type { PlacementGroup } from "./model.js";

/**
 * NOVA_PLACEMENT_CONFLICT when two hard groups share two or more members and ask for what
 * cannot hold at once: together on a host and apart on hosts or sites, or together in a
 * site and apart in sites. (Together in a site and apart on hosts is fine.)
 */
export function assertConsistent(groups: readonly PlacementGroup[]): void {
  const hard = groups.filter((g) => g.enforcement === "hard");
  for (const a of hard) {
    if (a.policy !== "affinity") continue;
    for (const b of hard) {
      if (b.policy !== "anti-affinity") continue;
      // Same host implies same site; same site says nothing about hosts.
      const contradicts = a.scope === "host" || b.scope === "site";
      if (!contradicts) continue;
      const shared = a.members.filter((m) => b.members.includes(m));
      if (shared.length < 2) continue;
      throw new NovaError(
        "NOVA_PLACEMENT_CONFLICT",
        `Placement groups ${a.name} (hard affinity per ${a.scope}) and ${b.name} (hard anti-affinity per ${b.scope}) both hold ${shared.slice(0, 5).join(", ")}: no placement can keep them together and apart. Remove the VMs from one group, or make one rule soft.`,
        { details: { groups: [a.name, b.name], shared } },
      );
    }
  }
}

/** NOVA_NOT_FOUND naming the members of `group` that are not VMs of this cluster. */
export function assertMembersExist(group: PlacementGroup, vmNames: ReadonlySet<string>): void {
  const unknown = group.members.filter((m) => !vmNames.has(m));
  if (unknown.length > 0)
    throw new NovaError(
      "NOVA_NOT_FOUND",
      `Placement group ${group.name} names ${unknown.length === 1 ? "a VM that does not exist" : "VMs that do not exist"}: ${unknown.slice(0, 10).join(", ")} (novacron vm list shows the VMs).`,
      { details: { group: group.name, unknown } },
    );
}
