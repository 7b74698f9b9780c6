/**
 * ITP, the placement pipeline: feasibility checks (checkers.ts) drop hosts, scorers
 * (scorers.ts) rate the rest, the best wins. `place` is the hot path (counts rejections
 * per check, builds no text); `explain` records every check's verdict and every scorer's
 * score per host, for `vm create --dry-run` and `placement explain`. A placement no host
 * can take throws NOVA_NO_CAPACITY saying which check failed on how many hosts.
 */
import { NovaError } from "../../lib/errors.js";
import { CHECKER_NAMES, CHECKERS, type CheckerName, freeMemory } from "./checkers.js";
import { type PlacementContext, prepare } from "./context.js";
import type { ItpVm, PlacementPolicy } from "./model.js";
import { SCORER_NAMES, SCORERS, type ScorerName } from "./scorers.js";
import type { PlacementState } from "./state.js";

/** A host's verdict in an explanation. */
export type HostVerdict =
  | { host: string; feasible: false; rejectedBy: CheckerName; reason: string }
  | { host: string; feasible: true; score: number; scores: Record<ScorerName, number> };

/** Why a VM goes where it goes. */
export interface Explanation {
  vm: string;
  /** The chosen host's name; null when none can take it. */
  chosen: string | null;
  /** Every host: rejected (by the first check it failed, and why) or scored. Best first. */
  hosts: HostVerdict[];
  /** Hosts rejected by each check (each host counted once, at the first it failed). */
  rejected: Partial<Record<CheckerName, number>>;
}

/**
 * The host index chosen for `vm`, or NOVA_NO_CAPACITY explaining the refusal. Scores at
 * most `policy.candidateLimit` feasible hosts, walking from the state's cursor; a VM with
 * a hard host affinity looks only at the hosts its group holds.
 */
export function place(state: PlacementState, vm: ItpVm, policy: PlacementPolicy): number {
  const ctx = prepare(state, vm, policy);
  const n = state.hosts.length;
  const only = narrowest(ctx.requiredHosts);
  let best = -1;
  let bestScore = Number.NEGATIVE_INFINITY;
  let found = 0;
  if (only) {
    for (const h of only) {
      if (firstFailed(ctx, h) >= 0) continue;
      const s = total(ctx, h);
      if (s > bestScore || (s === bestScore && h < best)) {
        best = h;
        bestScore = s;
      }
    }
  } else {
    const start = n > 0 ? state.cursor % n : 0;
    let k = 0;
    for (; k < n && found < policy.candidateLimit; k++) {
      const h = start + k < n ? start + k : start + k - n;
      if (firstFailed(ctx, h) >= 0) continue;
      found++;
      const s = total(ctx, h);
      if (s > bestScore) {
        best = h;
        bestScore = s;
      }
    }
    // The next placement walks on from here, so a batch visits every host in turn.
    if (policy.candidateLimit < n) state.cursor = start + k;
  }
  if (best < 0) throw noCapacity(ctx, rejectionCounts(ctx));
  return best;
}

/** The smallest host set a hard affinity rule allows, sorted; undefined without one. */
function narrowest(rules: PlacementContext["requiredHosts"]): number[] | undefined {
  if (rules.length === 0) return undefined;
  const smallest = rules.reduce((a, b) => (b.keys.size < a.keys.size ? b : a));
  return [...smallest.keys].sort((a, b) => a - b);
}

/** Every host's first failed check, counted (the refusal's explanation). */
function rejectionCounts(ctx: PlacementContext): Partial<Record<CheckerName, number>> {
  const rejected = new Uint32Array(CHECKERS.length);
  for (let h = 0; h < ctx.state.hosts.length; h++) {
    const failed = firstFailed(ctx, h);
    if (failed >= 0) rejected[failed]!++;
  }
  return countsOf(rejected);
}

/** Every host's verdict for `vm`, without placing it. */
export function explain(state: PlacementState, vm: ItpVm, policy: PlacementPolicy): Explanation {
  const ctx = prepare(state, vm, policy);
  const hosts: HostVerdict[] = [];
  const rejected = new Uint32Array(CHECKERS.length);
  for (let h = 0; h < state.hosts.length; h++) {
    const name = state.hosts[h]!.name;
    const failed = firstFailed(ctx, h);
    if (failed >= 0) {
      rejected[failed]!++;
      const checker = CHECKERS[failed]!;
      hosts.push({ host: name, feasible: false, rejectedBy: checker.name, reason: checker.why(ctx, h) });
      continue;
    }
    const scores = {} as Record<ScorerName, number>;
    for (const s of SCORERS) scores[s.name] = round(s.score(ctx, h));
    hosts.push({ host: name, feasible: true, score: round(total(ctx, h)), scores });
  }
  // Best first (ties keep the hosts' order, as `place` does); rejected after, in host order.
  const order = (v: HostVerdict) => (v.feasible ? -v.score : Number.POSITIVE_INFINITY);
  const sorted = hosts
    .map((v, i) => ({ v, i }))
    .sort((a, b) => order(a.v) - order(b.v) || a.i - b.i)
    .map((x) => x.v);
  const chosen = sorted[0]?.feasible ? sorted[0].host : null;
  return { vm: vm.name, chosen, hosts: sorted, rejected: countsOf(rejected) };
}

function firstFailed(ctx: PlacementContext, h: number): number {
  for (let c = 0; c < CHECKERS.length; c++) if (!CHECKERS[c]!.ok(ctx, h)) return c;
  return -1;
}

function total(ctx: PlacementContext, h: number): number {
  const w = ctx.policy.weights;
  let sum = 0;
  for (const s of SCORERS) {
    const weight = w[s.name];
    if (weight !== 0) sum += weight * s.score(ctx, h);
  }
  return sum;
}

function countsOf(rejected: Uint32Array): Partial<Record<CheckerName, number>> {
  const out: Partial<Record<CheckerName, number>> = {};
  rejected.forEach((n, i) => {
    if (n > 0) out[CHECKER_NAMES[i]!] = n;
  });
  return out;
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

const plural = (n: number) => `${n} host${n === 1 ? "" : "s"}`;

/** NOVA_NO_CAPACITY naming each check that failed and on how many hosts. */
function noCapacity(ctx: PlacementContext, rejected: Partial<Record<CheckerName, number>>): NovaError {
  const { vm, state } = ctx;
  let largest: { name: string; free: number } | undefined;
  for (let h = 0; h < state.hosts.length; h++) {
    const host = state.hosts[h]!;
    if (host.liveness !== "alive" || host.cordoned || host.maintenance) continue;
    const free = Math.floor(freeMemory(ctx, h));
    if (!largest || free > largest.free) largest = { name: host.name, free };
  }
  // The check that turned most hosts away first: usually the one to act on.
  const parts = Object.entries(rejected)
    .sort((a, b) => b[1] - a[1])
    .map(([check, n]) => `${check}: ${plural(n)}`);
  const summary = state.hosts.length === 0 ? "the cluster has no hosts" : parts.join(", ");
  const largestText = largest
    ? `; the largest free host is ${largest.name} with ${largest.free} MiB free`
    : "; no host is alive and schedulable";
  return new NovaError(
    "NOVA_NO_CAPACITY",
    `No host can run VM ${vm.name} (${vm.memoryMiB} MiB, ${vm.vcpus} vCPUs, image ${vm.imageName}): ${summary}${largestText}. novacron vm create --dry-run (a new VM) or novacron placement explain ${vm.name} (one that exists) shows each host's reason.`,
    {
      details: {
        neededMemoryMiB: vm.memoryMiB,
        neededVcpus: vm.vcpus,
        image: vm.imageName,
        rejected,
        largestFreeHost: largest ? { name: largest.name, freeMemoryMiB: largest.free } : null,
      },
    },
  );
}

export { CHECKER_NAMES, SCORER_NAMES };
