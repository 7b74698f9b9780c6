/**
 * ITP's inputs: what placement knows about hosts, the VM to place, the placement groups
 * (affinity rules) it belongs to, and the cluster's policy. Plain data, no I/O: the
 * pipeline (pipeline.ts) is pure so that every decision can be replayed and explained.
 */
import type { QemuMachineFacts } from "../../lib/qemu-support.js";

/** What placement needs to know about a host. */
export interface ItpHost {
  id: string;
  name: string;
  /** The site (datacenter) the host is in; null when unset. */
  site: string | null;
  /** Operator labels (`novacron host label`), matched by a VM's host selector. */
  labels: Readonly<Record<string, string>>;
  liveness: "alive" | "dead";
  cordoned: boolean;
  /** Being drained: nothing new lands here. */
  maintenance: boolean;
  memoryMiB: { total: number; used: number };
  vcpus: { total: number; used: number };
  /** The host's QEMU; null when its agent has not reported it. */
  qemu: QemuMachineFacts | null;
  /** The CPU model the host's VMs see (e.g. `host`, `x86-64-v2`); null when unknown. */
  cpuModel: string | null;
  /** Predicted CPU load over the next interval, 0..1 (from its recent history); null when unknown. */
  predictedLoad: number | null;
  /** An operator's preference for this host, -1..1 (0: none). */
  weight: number;
}

/** The VM to place. */
export interface ItpVm {
  name: string;
  memoryMiB: number;
  vcpus: number;
  /** The hosts whose image store holds its image (ids); null: any host can get it. */
  imageHostIds: ReadonlySet<string> | null;
  imageName: string;
  /** Its machine type; undefined or `q35` runs on any supported QEMU. */
  machineType?: string;
  /** Labels a host must carry, all of them (VM–host affinity). */
  hostSelector: Readonly<Record<string, string>>;
  /** The CPU model it was started with; a host offering another cannot take it live. */
  cpuModel?: string;
  /** The site it must run in, if any. */
  site?: string;
  /** Where it runs now (a migration or a drain): that host is not a candidate, and moves off-site cost more. */
  fromHostId?: string;
  /** Its disk is in this shared storage pool: only the hosts that see the pool (ids) can open it. */
  storagePool?: { name: string; hostIds: ReadonlySet<string> };
}

export const GROUP_POLICIES = ["affinity", "anti-affinity"] as const;
export type GroupPolicy = (typeof GROUP_POLICIES)[number];
export const GROUP_SCOPES = ["host", "site"] as const;
export type GroupScope = (typeof GROUP_SCOPES)[number];
export const GROUP_ENFORCEMENTS = ["hard", "soft"] as const;
export type GroupEnforcement = (typeof GROUP_ENFORCEMENTS)[number];

/**
 * A placement group: its member VMs run together (affinity) or apart (anti-affinity) on a
 * host or within a site. Hard rules filter hosts; soft ones only score them.
 */
export interface PlacementGroup {
  name: string;
  policy: GroupPolicy;
  scope: GroupScope;
  enforcement: GroupEnforcement;
  /** Member VM names. */
  members: readonly string[];
}

export const STRATEGIES = ["spread", "binpack"] as const;
export type Strategy = (typeof STRATEGIES)[number];

/** The cluster's placement policy. */
export interface PlacementPolicy {
  /** Memory promised to VMs may reach this multiple of a host's memory. @defaultValue 1 */
  memoryOvercommit: number;
  /** vCPUs promised may reach this multiple of a host's vCPUs. @defaultValue 4 */
  vcpuOvercommit: number;
  /** spread: the emptiest host wins; binpack: the fullest that fits. @defaultValue spread */
  strategy: Strategy;
  /** Each scorer's weight (0 turns it off). */
  weights: ScorerWeights;
  /**
   * `place` scores at most this many feasible hosts, walking the hosts from where the
   * previous placement stopped (as Kubernetes' scheduler samples nodes), so a placement
   * costs the same in a cluster of 10,000 hosts as in one of 1,000. Infinity: every host.
   * `explain` always looks at every host. @defaultValue 100
   */
  candidateLimit: number;
}

/** Weights of the scorers (scorers.ts). */
export interface ScorerWeights {
  fill: number;
  load: number;
  softAffinity: number;
  migrationCost: number;
  operator: number;
}

export const DEFAULT_POLICY: PlacementPolicy = {
  memoryOvercommit: 1,
  vcpuOvercommit: 4,
  strategy: "spread",
  weights: { fill: 1, load: 0.5, softAffinity: 1, migrationCost: 0.5, operator: 0.25 },
  candidateLimit: 100,
};
