/**
 * ITP's feasibility checks, in the order they run: each says whether a host can take the
 * VM at all and, when it cannot, why. `ok` is the hot path (every host, every VM) and
 * builds nothing; `why` is asked only when a placement is explained or refused.
 */
import { machineTypeSupport } from "../../lib/qemu-support.js";
import type { PlacementContext } from "./context.js";

/** One feasibility check. */
export interface Checker {
  /** Stable name: the API, the CLI and the docs use it. */
  name: CheckerName;
  ok(ctx: PlacementContext, h: number): boolean;
  why(ctx: PlacementContext, h: number): string;
}

export const CHECKER_NAMES = [
  "alive",
  "schedulable",
  "current-host",
  "qemu",
  "cpu-model",
  "image",
  "storage-pool",
  "site",
  "host-labels",
  "memory",
  "vcpus",
  "affinity",
  "anti-affinity",
] as const;
export type CheckerName = (typeof CHECKER_NAMES)[number];

const host = (ctx: PlacementContext, h: number) => ctx.state.hosts[h]!;

export const CHECKERS: readonly Checker[] = [
  {
    name: "alive",
    ok: (ctx, h) => host(ctx, h).liveness === "alive",
    why: () => "host is dead (missed heartbeats)",
  },
  {
    name: "schedulable",
    ok: (ctx, h) => !host(ctx, h).cordoned && !host(ctx, h).maintenance,
    why: (ctx, h) => (host(ctx, h).maintenance ? "host is being drained" : "host is cordoned"),
  },
  {
    name: "current-host",
    ok: (ctx, h) => ctx.fromIndex !== h,
    why: () => "the VM runs there now",
  },
  {
    name: "qemu",
    ok: (ctx, h) => {
      const q = host(ctx, h).qemu;
      if (!q) return false;
      return ctx.vm.machineType === undefined || machineTypeSupport(ctx.vm.machineType, q).ok;
    },
    why: (ctx, h) => {
      const q = host(ctx, h).qemu;
      if (!q) return "its agent has not reported its QEMU version (upgrade the agent)";
      const s = machineTypeSupport(ctx.vm.machineType ?? "q35", q);
      return s.ok ? "" : s.reason;
    },
  },
  {
    name: "cpu-model",
    ok: (ctx, h) => ctx.vm.cpuModel === undefined || host(ctx, h).cpuModel === ctx.vm.cpuModel,
    why: (ctx, h) =>
      `starts VMs with CPU model ${host(ctx, h).cpuModel ?? "unknown"}, the VM runs with ${ctx.vm.cpuModel ?? "?"} (a live move needs the same; host is KVM's, max is TCG's)`,
  },
  {
    name: "image",
    ok: (ctx, h) => ctx.vm.imageHostIds === null || ctx.vm.imageHostIds.has(host(ctx, h).id),
    why: (ctx) => `image ${ctx.vm.imageName} is not in its image store`,
  },
  {
    name: "storage-pool",
    ok: (ctx, h) => ctx.vm.storagePool === undefined || ctx.vm.storagePool.hostIds.has(host(ctx, h).id),
    why: (ctx) =>
      `does not see storage pool ${ctx.vm.storagePool?.name} (its marker file is not readable there), where the VM's disk is`,
  },
  {
    name: "site",
    ok: (ctx, h) => ctx.vm.site === undefined || host(ctx, h).site === ctx.vm.site,
    why: (ctx, h) => `in site ${host(ctx, h).site ?? "(none)"}, the VM must run in ${ctx.vm.site}`,
  },
  {
    name: "host-labels",
    ok: (ctx, h) => {
      const labels = host(ctx, h).labels;
      for (const k in ctx.vm.hostSelector) if (labels[k] !== ctx.vm.hostSelector[k]) return false;
      return true;
    },
    why: (ctx, h) => {
      const labels = host(ctx, h).labels;
      const missing = Object.entries(ctx.vm.hostSelector)
        .filter(([k, v]) => labels[k] !== v)
        .map(([k, v]) => `${k}=${v}`);
      return `lacks label ${missing.join(", ")}`;
    },
  },
  {
    name: "memory",
    ok: (ctx, h) =>
      ctx.state.memUsed[h]! + ctx.vm.memoryMiB <= host(ctx, h).memoryMiB.total * ctx.policy.memoryOvercommit,
    why: (ctx, h) =>
      `only ${Math.max(0, Math.floor(freeMemory(ctx, h)))} MiB free, needs ${ctx.vm.memoryMiB}`,
  },
  {
    name: "vcpus",
    ok: (ctx, h) =>
      ctx.state.vcpuUsed[h]! + ctx.vm.vcpus <= host(ctx, h).vcpus.total * ctx.policy.vcpuOvercommit,
    why: (ctx, h) =>
      `only ${Math.max(0, Math.floor(host(ctx, h).vcpus.total * ctx.policy.vcpuOvercommit - ctx.state.vcpuUsed[h]!))} vCPUs free (×${ctx.policy.vcpuOvercommit} overcommit), needs ${ctx.vm.vcpus}`,
  },
  {
    name: "affinity",
    ok: (ctx, h) => {
      for (const r of ctx.requiredHosts) if (!r.keys.has(h)) return false;
      const site = host(ctx, h).site;
      for (const r of ctx.requiredSites) if (site === null || !r.keys.has(site)) return false;
      return true;
    },
    why: (ctx, h) => {
      const r =
        ctx.requiredHosts.find((x) => !x.keys.has(h)) ??
        ctx.requiredSites.find((x) => host(ctx, h).site === null || !x.keys.has(host(ctx, h).site!));
      return `affinity group ${r?.group ?? "?"} keeps its members elsewhere`;
    },
  },
  {
    name: "anti-affinity",
    ok: (ctx, h) => {
      for (const r of ctx.forbiddenHosts) if (r.keys.has(h)) return false;
      const site = host(ctx, h).site;
      if (site !== null) for (const r of ctx.forbiddenSites) if (r.keys.has(site)) return false;
      return true;
    },
    why: (ctx, h) => {
      const site = host(ctx, h).site;
      const onHost = ctx.forbiddenHosts.find((x) => x.keys.has(h));
      if (onHost) return `anti-affinity group ${onHost.group} has a member on this host`;
      const inSite = ctx.forbiddenSites.find((x) => site !== null && x.keys.has(site));
      return `anti-affinity group ${inSite?.group ?? "?"} has a member in site ${site}`;
    },
  },
];

/** Memory still promisable on host `h`. */
export function freeMemory(ctx: PlacementContext, h: number): number {
  return ctx.state.hosts[h]!.memoryMiB.total * ctx.policy.memoryOvercommit - ctx.state.memUsed[h]!;
}
