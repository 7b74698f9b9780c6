/**
 * The rebalancer's pure planner: given each host's recent CPU utilization, the VMs on it
 * with their own CPU use, the migrations under way and the settings, which VMs to move
 * where now, and why nothing moves otherwise. No I/O: the executor
 * (migration/rebalancer.ts) gathers the figures and starts the moves; the simulation
 * (testing/rebalance-sim.ts, `npm run bench:rebalance`) drives this same function over
 * synthetic load traces.
 *
 * The rules (docs/placement.md "Rebalancing"):
 *  1. Utilization is a host's VMs' CPU use (cores, averaged over the window) over its
 *     vCPUs. Hosts without figures, dead, cordoned or being drained take no part, nor do
 *     hosts a migration touched less than a window ago: their figures still mix the VMs
 *     they had with the ones they have (acting on them moved a second VM after the first).
 *  2. A host is **overloaded** when its utilization is above `minUtilization` and above
 *     the mean of the hosts taking part by more than `threshold`.
 *  3. Only a host overloaded for `holdMs` without a break gives up a VM: a burst shorter
 *     than the hold moves nothing.
 *  4. A move takes one running VM that has not moved for `cooldownMs` to a host its
 *     placement allows, and must narrow the gap between the two hosts' utilizations by at
 *     least `margin`, and leave the target not overloaded. The reverse of a move that
 *     narrowed a gap can only widen it, so a VM does not move back while loads hold still;
 *     the hold and the cooldown keep changing loads from doing it.
 *  5. At most `maxPerHost` migrations touch a host at once and `maxPerCluster` run in the
 *     cluster (any migration counts, not only the rebalancer's); one move per source host
 *     per pass, the most overloaded host first, each the move that narrows its gap most.
 */

/** Rebalancer settings (stored; `novacron rebalancer set`). */
export interface RebalanceSettings {
  /** Off by default: nothing moves until an operator turns it on. */
  enabled: boolean;
  /** Over the mean by more than this (utilization, 0..1) is overloaded. @defaultValue 0.25 */
  threshold: number;
  /** A host this busy or less is never overloaded. @defaultValue 0.5 */
  minUtilization: number;
  /** Overloaded for this long before a VM moves. @defaultValue 300000 (5 min) */
  holdMs: number;
  /** A move must narrow the two hosts' gap by this much. @defaultValue 0.1 */
  margin: number;
  /** A VM that moved (for any reason) stays put this long. @defaultValue 1800000 (30 min) */
  cooldownMs: number;
  /** Migrations touching one host at once. @defaultValue 1 */
  maxPerHost: number;
  /** Migrations running in the cluster at once. @defaultValue 2 */
  maxPerCluster: number;
  /** Utilization is averaged over this window. @defaultValue 60000 */
  windowMs: number;
}

export const DEFAULT_REBALANCE_SETTINGS: RebalanceSettings = {
  enabled: false,
  threshold: 0.25,
  minUtilization: 0.5,
  holdMs: 300_000,
  margin: 0.1,
  cooldownMs: 1_800_000,
  maxPerHost: 1,
  maxPerCluster: 2,
  windowMs: 60_000,
};

/** A host as the planner sees it. */
export interface RebalanceHost {
  id: string;
  name: string;
  vcpus: number;
  /** Alive, uncordoned and not being drained. */
  eligible: boolean;
  /** A migration to or from it ended less than a window ago (its figures are settling). */
  settling?: boolean;
  /** CPU cores its VMs used, averaged over the window; null without figures. */
  cpuCores: number | null;
}

/** A VM as the planner sees it. */
export interface RebalanceVm {
  id: string;
  name: string;
  hostId: string;
  /** Running and not in a migration: only such a VM can move live. */
  movable: boolean;
  /** CPU cores it used, averaged over the window; null without figures. */
  cpuCores: number | null;
  /** When it last started a migration (any), epoch ms; null if never. */
  lastMovedAt: number | null;
  /** The hosts its placement allows it to move to (ITP's feasible hosts). */
  allowedTargets: ReadonlySet<string>;
}

/** What the planner reads. */
export interface RebalanceInput {
  now: number;
  settings: RebalanceSettings;
  hosts: readonly RebalanceHost[];
  vms: readonly RebalanceVm[];
  /** Migrations under way, by the host ids they touch. */
  activeMigrations: readonly { sourceHostId: string; targetHostId: string }[];
  /** Since when each host has been overloaded without a break (the previous pass's answer). */
  overloadedSince: ReadonlyMap<string, number>;
}

/** One move to start. */
export interface RebalanceMove {
  vmId: string;
  vm: string;
  fromHostId: string;
  from: string;
  toHostId: string;
  to: string;
  /** The two hosts' utilizations before and after. */
  before: { from: number; to: number };
  after: { from: number; to: number };
  /** How much the move narrows their gap. */
  gain: number;
}

/** A host's figures and verdict in this pass (for `rebalancer plan` and the logs). */
export interface RebalanceHostReport {
  host: string;
  utilization: number | null;
  overloaded: boolean;
  overloadedForMs: number;
  /** Why it gives up no VM now, when it is overloaded but nothing moves from it. */
  note?: string;
}

/** The planner's answer. */
export interface RebalancePlan {
  moves: RebalanceMove[];
  /** Carry into the next pass. */
  overloadedSince: Map<string, number>;
  mean: number | null;
  hosts: RebalanceHostReport[];
  /** Why nothing was considered at all (disabled, too few hosts, the cluster cap). */
  idle?: string;
}

const round = (x: number): number => Math.round(x * 1000) / 1000;

/**
 * Each taking part host's utilization, their mean, and the hosts overloaded now (rules 1
 * and 2). The executor uses it to work out placement only for VMs that may move.
 */
export function utilizations(
  hosts: readonly RebalanceHost[],
  s: Pick<RebalanceSettings, "threshold" | "minUtilization">,
): { util: Map<string, number>; mean: number | null; overloaded: Set<string> } {
  const util = new Map<string, number>();
  for (const h of hosts)
    if (h.eligible && !h.settling && h.cpuCores !== null && h.vcpus > 0) util.set(h.id, h.cpuCores / h.vcpus);
  const values = [...util.values()];
  const mean = values.length > 0 ? values.reduce((a, b) => a + b, 0) / values.length : null;
  const overloaded = new Set<string>();
  if (mean !== null) for (const [id, u] of util) if (isOverloaded(u, mean, s)) overloaded.add(id);
  return { util, mean, overloaded };
}

function isOverloaded(
  u: number,
  mean: number,
  s: Pick<RebalanceSettings, "threshold" | "minUtilization">,
): boolean {
  return u > s.minUtilization && u - mean > s.threshold;
}

/** Plans one pass; see the module header for the rules. */
export function planRebalance(input: RebalanceInput): RebalancePlan {
  const { settings: s, now } = input;
  const { util, mean, overloaded: overloadedNow } = utilizations(input.hosts, s);
  const overloaded = (u: number, m: number): boolean => isOverloaded(u, m, s);

  const overloadedSince = new Map<string, number>();
  for (const id of overloadedNow) overloadedSince.set(id, input.overloadedSince.get(id) ?? now);

  const reports = new Map<string, RebalanceHostReport>();
  for (const h of input.hosts) {
    const u = util.get(h.id);
    const since = overloadedSince.get(h.id);
    reports.set(h.id, {
      host: h.name,
      utilization: u === undefined ? null : round(u),
      overloaded: since !== undefined,
      overloadedForMs: since === undefined ? 0 : now - since,
      ...(u === undefined
        ? {
            note: !h.eligible
              ? "not eligible (dead, cordoned or draining)"
              : h.settling
                ? "settling: a migration touched it less than a window ago"
                : "no CPU figures from its agent yet",
          }
        : {}),
    });
  }
  const answer = (moves: RebalanceMove[], idle?: string): RebalancePlan => ({
    moves,
    overloadedSince,
    mean: mean === null ? null : round(mean),
    hosts: [...reports.values()],
    ...(idle ? { idle } : {}),
  });
  if (!s.enabled) return answer([], "the rebalancer is off (novacron rebalancer set --enable)");
  if (mean === null || util.size < 2) return answer([], "fewer than two hosts report CPU figures");

  const perHost = new Map<string, number>();
  const bump = (id: string): void => {
    perHost.set(id, (perHost.get(id) ?? 0) + 1);
  };
  for (const m of input.activeMigrations) {
    bump(m.sourceHostId);
    bump(m.targetHostId);
  }
  let inCluster = input.activeMigrations.length;
  const hostById = new Map(input.hosts.map((h) => [h.id, h]));
  const vmsByHost = new Map<string, RebalanceVm[]>();
  for (const v of input.vms) vmsByHost.set(v.hostId, [...(vmsByHost.get(v.hostId) ?? []), v]);

  const sources = [...overloadedSince.keys()].sort(
    (a, b) => (util.get(b) ?? 0) - (util.get(a) ?? 0) || a.localeCompare(b),
  );
  const moves: RebalanceMove[] = [];
  const note = (id: string, text: string): void => {
    const r = reports.get(id);
    if (r) r.note = text;
  };
  for (const from of sources) {
    const held = now - (overloadedSince.get(from) ?? now);
    if (held < s.holdMs) {
      note(from, `overloaded for ${Math.round(held / 1000)} s of the ${Math.round(s.holdMs / 1000)} s hold`);
      continue;
    }
    if (inCluster >= s.maxPerCluster) {
      note(from, `the cluster runs ${inCluster} migrations (at most ${s.maxPerCluster})`);
      continue;
    }
    if ((perHost.get(from) ?? 0) >= s.maxPerHost) {
      note(from, `it takes part in ${perHost.get(from)} migrations (at most ${s.maxPerHost})`);
      continue;
    }
    const fromHost = hostById.get(from)!;
    let best: RebalanceMove | undefined;
    let why = "no VM on it can move (none running with CPU figures, out of its cooldown)";
    for (const vm of vmsByHost.get(from) ?? []) {
      if (!vm.movable || vm.cpuCores === null || vm.cpuCores <= 0) continue;
      if (vm.lastMovedAt !== null && now - vm.lastMovedAt < s.cooldownMs) continue;
      why = "no allowed host would narrow the gap by the margin without becoming overloaded";
      for (const to of vm.allowedTargets) {
        const uTo = util.get(to);
        const toHost = hostById.get(to);
        if (uTo === undefined || !toHost || to === from) continue;
        if ((perHost.get(to) ?? 0) >= s.maxPerHost) continue;
        const uFrom = util.get(from)!;
        const afterFrom = uFrom - vm.cpuCores / fromHost.vcpus;
        const afterTo = uTo + vm.cpuCores / toHost.vcpus;
        if (overloaded(afterTo, mean)) continue;
        const gain = uFrom - uTo - Math.abs(afterFrom - afterTo);
        if (gain < s.margin) continue;
        if (
          !best ||
          gain > best.gain ||
          (gain === best.gain && (vm.name < best.vm || (vm.name === best.vm && toHost.name < best.to)))
        )
          best = {
            vmId: vm.id,
            vm: vm.name,
            fromHostId: from,
            from: fromHost.name,
            toHostId: to,
            to: toHost.name,
            before: { from: round(uFrom), to: round(uTo) },
            after: { from: round(afterFrom), to: round(afterTo) },
            gain: round(gain),
          };
      }
    }
    if (!best) {
      note(from, why);
      continue;
    }
    moves.push(best);
    util.set(from, best.after.from);
    util.set(best.toHostId, best.after.to);
    bump(from);
    bump(best.toHostId);
    inCluster++;
    note(from, `moves ${best.vm} to ${best.to} (gap narrows by ${best.gain})`);
  }
  return answer(moves);
}
