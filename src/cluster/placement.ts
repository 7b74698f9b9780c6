/**
 * The server's placement: builds ITP's state (placement/itp/) from the database — hosts
 * with their site, labels, weight and promised memory and vCPUs, where every VM runs (or
 * is moving to), the placement groups — and asks ITP where a VM goes, or why it can go
 * nowhere. Every placement in the server comes through here (VM create, migration
 * targets, a drain's check and moves, a VM arriving from another cluster), under
 * PLACEMENT_LOCK_KEY so that two placements never count the same free memory.
 *
 * A host's predicted load comes from the CPU samples its agent reported (host-load.ts):
 * their recency-weighted mean over the last ten minutes (host-load.ts
 * `predictedUtilizations`, computed in the database); a host without samples scores as
 * unknown. The constructor's hook
 * replaces that (tests).
 */
import type { PlacementExplanation } from "../api/types/placement.js";
import { isNovaError, NovaError } from "../lib/errors.js";
import { cpuModelFor } from "../lib/qemu-support.js";
import {
  DEFAULT_POLICY,
  type ItpHost,
  type ItpVm,
  type PlacementGroup,
  type PlacementPolicy,
  STRATEGIES,
  type Strategy,
} from "../placement/itp/model.js";
import { explain, place } from "../placement/itp/pipeline.js";
import { assertConsistent } from "../placement/itp/rules.js";
import { PlacementState } from "../placement/itp/state.js";
import type { Queryable, ReadQueryable } from "./store/db.js";
import { predictedUtilizations } from "./store/host-load.js";
import { type HostRecord, listHosts } from "./store/hosts.js";
import { ACTIVE_MIGRATION_STATES } from "./store/migrations.js";
import { listPlacementGroups } from "./store/placement-groups.js";

/**
 * The transaction-scoped advisory lock every placement takes (VM create, migration, a
 * drain's check, a VM arriving from another cluster, placement group changes), so that
 * two placements never count the same free memory and groups are checked as a whole.
 */
export const PLACEMENT_LOCK_KEY = 7_311_002;

/** Takes the placement lock for the rest of the transaction. */
export async function lockPlacement(tx: Queryable): Promise<void> {
  await tx.query("SELECT pg_advisory_xact_lock($1)", [PLACEMENT_LOCK_KEY]);
}

/** What is placed. */
export interface PlacementRequest {
  name: string;
  memoryMiB: number;
  vcpus: number;
  imageName: string;
  /** Hosts holding its image; null: any (a migration copies the image to its target). */
  imageHostIds: readonly string[] | null;
  /** Its machine type; undefined or `q35`: any supported QEMU. */
  machineType?: string;
  hostSelector?: Readonly<Record<string, string>>;
  site?: string | null;
  /** Where it runs now, for a move. */
  fromHostId?: string;
  /**
   * A live move (migration, drain, rebalancing): the target must start it with the CPU
   * model it runs with on `fromHostId`. Not for an HA restart, which boots it afresh.
   */
  live?: boolean;
  /** Its disk is in this shared storage pool: only the hosts that see it can open the disk. */
  storagePool?: { name: string; hostIds: readonly string[] };
}

/** A hook giving a host's predicted CPU load, 0..1 (null: unknown). */
export type LoadPredictor = (host: HostRecord) => number | null;

/** The server's placement: the cluster's policy and the hook for hosts' predicted load. */
export class ClusterPlacement {
  /** Where the next sampled walk over the hosts starts (ITP's candidateLimit), kept across placements. */
  private cursor = 0;

  constructor(
    readonly policy: PlacementPolicy = DEFAULT_POLICY,
    private readonly predictedLoad?: LoadPredictor,
  ) {}

  /**
   * Reads the cluster as placement sees it. `joining` adds a VM not stored yet to groups
   * (a create with --group): the groups are checked as a whole with it
   * (NOVA_PLACEMENT_CONFLICT) and NOVA_NOT_FOUND names a group that does not exist.
   */
  async load(q: ReadQueryable, joining?: { vm: string; groups: readonly string[] }): Promise<PlacementView> {
    const hosts = await listHosts(q);
    const stored = await listPlacementGroups(q);
    const groups: PlacementGroup[] = stored.map((g) => ({
      name: g.name,
      policy: g.policy,
      scope: g.scope,
      enforcement: g.enforcement,
      members: g.members,
    }));
    if (joining && joining.groups.length > 0) {
      const unknown = joining.groups.filter((n) => !groups.some((g) => g.name === n));
      if (unknown.length > 0)
        throw new NovaError(
          "NOVA_NOT_FOUND",
          `Placement group ${unknown.join(", ")} not found; create it first with novacron placement group create (novacron placement group list shows the groups).`,
          { details: { groups: unknown } },
        );
      for (const g of groups) if (joining.groups.includes(g.name)) g.members = [...g.members, joining.vm];
      assertConsistent(groups);
    }
    const { rows } = await q.query<{ name: string; host_id: string }>(
      `SELECT v.name, COALESCE(m.target_host_id, v.host_id) AS host_id
       FROM vms v LEFT JOIN migrations m ON m.vm_id = v.id AND m.target_host_id IS NOT NULL
         AND m.state = ANY($1::text[])
       WHERE v.host_id IS NOT NULL AND v.state <> 'deleting'`,
      [ACTIVE_MIGRATION_STATES],
    );
    // A VM runs where it is, or (while a migration moves it) where it is going: a group's
    // rules see it there, so two moves of one drain do not land an anti-affine pair together.
    const placed = new Map(rows.map((r) => [r.name, r.host_id]));
    const loads = this.predictedLoad ? undefined : await predictedUtilizations(q);
    const itpHosts = hosts.map((h) => itpHostOf(h, this.predictedLoad?.(h) ?? loads?.get(h.id) ?? null));
    const state = new PlacementState(itpHosts, groups, placed);
    state.cursor = this.cursor;
    return new PlacementView(this, hosts, state, (cursor) => {
      this.cursor = cursor;
    });
  }
}

/** One read of the cluster, placing VM after VM (a drain's check places a batch). */
export class PlacementView {
  constructor(
    private readonly owner: ClusterPlacement,
    /** The hosts as read. */
    readonly hosts: readonly HostRecord[],
    private readonly state: PlacementState,
    private readonly saveCursor: (cursor: number) => void,
  ) {}

  /** The chosen host; NOVA_NO_CAPACITY saying which checks failed on how many hosts. */
  place(req: PlacementRequest): HostRecord {
    const i = place(this.state, this.itpVm(req), this.owner.policy);
    this.saveCursor(this.state.cursor);
    return this.hosts[i]!;
  }

  /**
   * The chosen host, off the hosts named in `avoid` (where a move failed just now) when
   * another host fits; else as `place` chooses.
   */
  placeAvoiding(req: PlacementRequest, avoid: readonly string[]): HostRecord {
    const hidden = this.state.hosts.filter((h) => avoid.includes(h.name) && !h.cordoned);
    if (hidden.length === 0) return this.place(req);
    // Cordoned for this one placement: the checks skip them like any cordoned host.
    for (const h of hidden) h.cordoned = true;
    try {
      return this.place(req);
    } catch (err) {
      if (!isNovaError(err, "NOVA_NO_CAPACITY")) throw err;
    } finally {
      for (const h of hidden) h.cordoned = false;
    }
    return this.place(req);
  }

  /**
   * Checks one named host (a migration's or arrival's explicit target) with every check
   * placement makes; NOVA_NO_CAPACITY naming the check it fails and why.
   */
  placeOn(req: PlacementRequest, hostId: string): HostRecord {
    const host = this.hosts.find((h) => h.id === hostId);
    if (!host)
      throw new NovaError("NOVA_NOT_FOUND", `Host ${hostId} not found. List hosts with: novacron host list`);
    const verdict = explain(this.state, this.itpVm(req), this.owner.policy).hosts.find(
      (v) => v.host === host.name,
    );
    if (verdict && !verdict.feasible)
      throw new NovaError(
        "NOVA_NO_CAPACITY",
        `Host ${host.name} cannot run VM ${req.name} (${req.memoryMiB} MiB, ${req.vcpus} vCPUs): ${verdict.rejectedBy}: ${verdict.reason}. novacron placement explain ${req.name} shows every host's verdict.`,
        {
          details: {
            host: host.name,
            rejectedBy: verdict.rejectedBy,
            reason: verdict.reason,
            neededMemoryMiB: req.memoryMiB,
            neededVcpus: req.vcpus,
            rejected: { [verdict.rejectedBy]: 1 },
          },
        },
      );
    return host;
  }

  /** Every host's verdict for `req`, without placing it. */
  explain(req: PlacementRequest): PlacementExplanation {
    const p = this.owner.policy;
    return {
      ...explain(this.state, this.itpVm(req), p),
      policy: {
        strategy: p.strategy,
        memoryOvercommit: p.memoryOvercommit,
        vcpuOvercommit: p.vcpuOvercommit,
      },
    };
  }

  /** Records that `req` now takes its resources on `host` (the next placement of a batch counts them). */
  commit(req: PlacementRequest, host: HostRecord): void {
    const i = this.state.indexOf(host.id);
    if (i !== undefined) this.state.commit(req.name, i, req.memoryMiB, req.vcpus);
  }

  /** The CPU model a VM moving live from `fromHostId` runs with: its host's (unknown host: none). */
  private liveCpuModel(fromHostId: string | undefined): { cpuModel?: string } {
    const from = this.hosts.find((h) => h.id === fromHostId);
    return from ? { cpuModel: cpuModelFor(from.accel) } : {};
  }

  private itpVm(req: PlacementRequest): ItpVm {
    return {
      name: req.name,
      memoryMiB: req.memoryMiB,
      vcpus: req.vcpus,
      imageHostIds: req.imageHostIds === null ? null : new Set(req.imageHostIds),
      imageName: req.imageName,
      hostSelector: req.hostSelector ?? {},
      ...(req.machineType !== undefined ? { machineType: req.machineType } : {}),
      ...(req.site ? { site: req.site } : {}),
      ...(req.fromHostId !== undefined ? { fromHostId: req.fromHostId } : {}),
      ...(req.live ? this.liveCpuModel(req.fromHostId) : {}),
      ...(req.storagePool
        ? { storagePool: { name: req.storagePool.name, hostIds: new Set(req.storagePool.hostIds) } }
        : {}),
    };
  }
}

/** The policy settings an operator gives the server (flags, environment). */
export interface PlacementPolicyInput {
  /** @defaultValue spread */
  strategy?: string;
  /** @defaultValue 1 */
  memoryOvercommit?: number;
  /** @defaultValue 4 */
  vcpuOvercommit?: number;
}

/** ITP's policy from the operator's settings; NOVA_CONFIG names a setting that is not valid. */
export function placementPolicy(input: PlacementPolicyInput): PlacementPolicy {
  const strategy = input.strategy ?? DEFAULT_POLICY.strategy;
  if (!(STRATEGIES as readonly string[]).includes(strategy))
    throw new NovaError(
      "NOVA_CONFIG",
      `--placement-strategy ${JSON.stringify(strategy)} is not a strategy: use ${STRATEGIES.join(" or ")}.`,
    );
  return {
    ...DEFAULT_POLICY,
    strategy: strategy as Strategy,
    memoryOvercommit: input.memoryOvercommit ?? DEFAULT_POLICY.memoryOvercommit,
    vcpuOvercommit: input.vcpuOvercommit ?? DEFAULT_POLICY.vcpuOvercommit,
  };
}

/** What ITP knows of host `h`. */
export function itpHostOf(h: HostRecord, predictedLoad: number | null): ItpHost {
  return {
    id: h.id,
    name: h.name,
    site: h.site,
    labels: h.labels,
    liveness: h.liveness,
    cordoned: h.cordoned,
    maintenance: h.drain?.state === "draining",
    memoryMiB: { total: h.memoryMiB, used: h.allocatedMemoryMiB },
    vcpus: { total: h.vcpus, used: h.allocatedVcpus },
    qemu: h.qemu,
    // What the agent starts VMs with. Under KVM that is the host's own CPU, and two KVM
    // hosts with different CPUs are not told apart: agents report no CPU identity.
    cpuModel: cpuModelFor(h.accel),
    predictedLoad,
    weight: h.placementWeight,
  };
}
