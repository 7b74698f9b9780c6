/**
 * What one placement asks of every host, worked out once per VM before the hosts are
 * walked: the hosts and sites its hard placement groups require or forbid, and the pull
 * and push of its soft ones. The checkers and scorers read only this and the state, so a
 * host costs a few lookups, not a walk over the groups.
 */
import type { ItpVm, PlacementPolicy } from "./model.js";
import type { PlacementState } from "./state.js";

/** A host or site set a hard rule requires or forbids, with the rule that says so. */
export interface RuleSet<K> {
  keys: ReadonlySet<K>;
  group: string;
}

/** One VM's placement, prepared. */
export interface PlacementContext {
  vm: ItpVm;
  policy: PlacementPolicy;
  state: PlacementState;
  /** Hard affinity: the VM must land on one of these hosts / in one of these sites (each rule). */
  requiredHosts: RuleSet<number>[];
  requiredSites: RuleSet<string>[];
  /** Hard anti-affinity: never on these hosts / in these sites. */
  forbiddenHosts: RuleSet<number>[];
  forbiddenSites: RuleSet<string>[];
  /** Soft rules: members per host and site that attract (affinity) or repel (anti-affinity). */
  softHosts: { counts: ReadonlyMap<number, number>; sign: 1 | -1 }[];
  softSites: { counts: ReadonlyMap<string, number>; sign: 1 | -1 }[];
  /** The most members any soft rule could count (normalises the score). */
  softMax: number;
  /** Where the VM runs now (host index), for a move. */
  fromIndex: number | undefined;
}

/** Prepares the placement of `vm`. */
export function prepare(state: PlacementState, vm: ItpVm, policy: PlacementPolicy): PlacementContext {
  const ctx: PlacementContext = {
    vm,
    policy,
    state,
    requiredHosts: [],
    requiredSites: [],
    forbiddenHosts: [],
    forbiddenSites: [],
    softHosts: [],
    softSites: [],
    softMax: 0,
    fromIndex: vm.fromHostId !== undefined ? state.indexOf(vm.fromHostId) : undefined,
  };
  const self = state.hostOf(vm.name);
  const selfSite = self !== undefined ? state.hosts[self]!.site : null;
  for (const p of state.groupsOf(vm.name)) {
    const g = p.group;
    // The VM's own presence (it runs somewhere while it moves) does not count for itself.
    const hosts = without(p.hosts, self);
    const sites = without(p.sites, selfSite ?? undefined);
    if (g.enforcement === "hard") {
      const list = g.scope === "host" ? hosts : sites;
      if (list.size === 0) continue;
      if (g.policy === "affinity") {
        if (g.scope === "host") ctx.requiredHosts.push({ keys: new Set(hosts.keys()), group: g.name });
        else ctx.requiredSites.push({ keys: new Set(sites.keys()), group: g.name });
      } else if (g.scope === "host") ctx.forbiddenHosts.push({ keys: new Set(hosts.keys()), group: g.name });
      else ctx.forbiddenSites.push({ keys: new Set(sites.keys()), group: g.name });
    } else {
      const sign = g.policy === "affinity" ? 1 : -1;
      if (g.scope === "host") ctx.softHosts.push({ counts: hosts, sign });
      else ctx.softSites.push({ counts: sites, sign });
      ctx.softMax += Math.max(0, p.members.size - 1);
    }
  }
  return ctx;
}

function without<K>(m: ReadonlyMap<K, number>, k: K | undefined): ReadonlyMap<K, number> {
  if (k === undefined || !m.has(k)) return m;
  const copy = new Map(m);
  const n = (copy.get(k) ?? 0) - 1;
  if (n > 0) copy.set(k, n);
  else copy.delete(k);
  return copy;
}
