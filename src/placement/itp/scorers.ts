/**
 * ITP's scorers: each rates a feasible host for the VM, and the policy's weight says how
 * much that rating counts. A host's score is the weighted sum; the highest wins (ties go
 * to the host named first, so a placement is reproducible).
 */
import type { PlacementContext } from "./context.js";
import type { ScorerWeights } from "./model.js";

/** One scorer. */
export interface Scorer {
  name: ScorerName;
  /** The rating of host `h`: 0..1, or -1..1 where a host can be worse than indifferent. */
  score(ctx: PlacementContext, h: number): number;
}

export const SCORER_NAMES = ["fill", "load", "softAffinity", "migrationCost", "operator"] as const;
export type ScorerName = (typeof SCORER_NAMES)[number] & keyof ScorerWeights;

export const SCORERS: readonly Scorer[] = [
  {
    // spread: the emptier the host after placing, the better; binpack: the fuller.
    name: "fill",
    score: (ctx, h) => {
      const host = ctx.state.hosts[h]!;
      const capacity = host.memoryMiB.total * ctx.policy.memoryOvercommit;
      const used = capacity > 0 ? (ctx.state.memUsed[h]! + ctx.vm.memoryMiB) / capacity : 1;
      return ctx.policy.strategy === "spread" ? 1 - used : used;
    },
  },
  {
    // The host's predicted CPU load from its recent history; unknown counts as half.
    name: "load",
    score: (ctx, h) => {
      const load = ctx.state.hosts[h]!.predictedLoad;
      return load === null ? 0.5 : 1 - Math.min(1, Math.max(0, load));
    },
  },
  {
    // Soft rules: members of its affinity groups here pull, of its anti-affinity groups push.
    name: "softAffinity",
    score: (ctx, h) => {
      if (ctx.softMax === 0) return 0;
      let sum = 0;
      for (const r of ctx.softHosts) sum += r.sign * (r.counts.get(h) ?? 0);
      const site = ctx.state.hosts[h]!.site;
      if (site !== null) for (const r of ctx.softSites) sum += r.sign * (r.counts.get(site) ?? 0);
      return sum / ctx.softMax;
    },
  },
  {
    // A move within the VM's site crosses no WAN link: cheaper than one to another site.
    name: "migrationCost",
    score: (ctx, h) => {
      if (ctx.fromIndex === undefined) return 0;
      return ctx.state.hosts[h]!.site === ctx.state.hosts[ctx.fromIndex]!.site ? 1 : 0;
    },
  },
  {
    name: "operator",
    score: (ctx, h) => ctx.state.hosts[h]!.weight,
  },
];
