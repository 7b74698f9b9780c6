/**
 * The cluster as placement sees it while it places: every host's promised memory and
 * vCPUs, where each VM runs, and for each placement group where its members are (per host
 * and per site). Placing a VM updates it (`commit`), so one state serves a batch of
 * placements (a drain, a simulation, the benchmark) without re-reading anything.
 */
import type { ItpHost, PlacementGroup } from "./model.js";

/** Where a group's members run. */
interface GroupPresence {
  group: PlacementGroup;
  members: ReadonlySet<string>;
  /** Members per host index. */
  hosts: Map<number, number>;
  /** Members per site. */
  sites: Map<string, number>;
}

/** The mutable state of one placement run. */
export class PlacementState {
  readonly hosts: readonly ItpHost[];
  /** Promised memory and vCPUs per host index (starts from each host's `used`). */
  readonly memUsed: Float64Array;
  readonly vcpuUsed: Float64Array;
  private readonly hostIndex = new Map<string, number>();
  private readonly vmHost = new Map<string, number>();
  private readonly groupsByVm = new Map<string, GroupPresence[]>();
  readonly groups: readonly GroupPresence[];

  /**
   * `placed` names where existing VMs run (VM name → host id); their resources are part of
   * each host's `used` already, so only the groups' presence is derived from it.
   */
  constructor(
    hosts: readonly ItpHost[],
    groups: readonly PlacementGroup[],
    placed: ReadonlyMap<string, string>,
  ) {
    this.hosts = hosts;
    this.memUsed = Float64Array.from(hosts, (h) => h.memoryMiB.used);
    this.vcpuUsed = Float64Array.from(hosts, (h) => h.vcpus.used);
    for (const [i, h] of hosts.entries()) this.hostIndex.set(h.id, i);
    this.groups = groups.map((group) => ({
      group,
      members: new Set(group.members),
      hosts: new Map<number, number>(),
      sites: new Map<string, number>(),
    }));
    for (const g of this.groups)
      for (const m of g.members) {
        const list = this.groupsByVm.get(m);
        if (list) list.push(g);
        else this.groupsByVm.set(m, [g]);
      }
    for (const [vm, hostId] of placed) {
      const i = this.hostIndex.get(hostId);
      if (i !== undefined) this.track(vm, i, 1);
    }
  }

  /** Where the next sampled walk over the hosts starts (pipeline.ts). */
  cursor = 0;

  /** The index of a host by id. */
  indexOf(hostId: string): number | undefined {
    return this.hostIndex.get(hostId);
  }

  /** Where a VM runs (host index), if known. */
  hostOf(vm: string): number | undefined {
    return this.vmHost.get(vm);
  }

  /** The groups a VM is a member of, with where their members run. */
  groupsOf(vm: string): readonly GroupPresence[] {
    return this.groupsByVm.get(vm) ?? [];
  }

  /** Records that `vm` now runs on host `i` with these resources (leaving where it ran). */
  commit(vm: string, i: number, memoryMiB: number, vcpus: number): void {
    const before = this.vmHost.get(vm);
    if (before !== undefined) {
      this.memUsed[before] = this.memUsed[before]! - memoryMiB;
      this.vcpuUsed[before] = this.vcpuUsed[before]! - vcpus;
      this.track(vm, before, -1);
    }
    this.memUsed[i] = this.memUsed[i]! + memoryMiB;
    this.vcpuUsed[i] = this.vcpuUsed[i]! + vcpus;
    this.track(vm, i, 1);
  }

  private track(vm: string, i: number, delta: 1 | -1): void {
    if (delta > 0) this.vmHost.set(vm, i);
    else this.vmHost.delete(vm);
    const site = this.hosts[i]!.site;
    for (const g of this.groupsByVm.get(vm) ?? []) {
      bump(g.hosts, i, delta);
      if (site !== null) bump(g.sites, site, delta);
    }
  }
}

function bump<K>(m: Map<K, number>, k: K, delta: number): void {
  const n = (m.get(k) ?? 0) + delta;
  if (n > 0) m.set(k, n);
  else m.delete(k);
}

export type { GroupPresence };
