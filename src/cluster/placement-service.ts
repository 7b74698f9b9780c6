/**
 * User operations on what placement reads (docs/placement.md): a host's labels, site and
 * weight, and placement groups (create, add and remove members, delete). A group change
 * is checked against every other group under the placement lock — contradictory hard
 * rules are NOVA_PLACEMENT_CONFLICT, members that are not VMs NOVA_NOT_FOUND — and a
 * refusal changes nothing.
 */
import type { ClusterEvent } from "../api/types/events.js";
import type { PlacementGroupsPost } from "../api/types/placement.js";
import { NovaError } from "../lib/errors.js";
import type { PlacementGroup } from "../placement/itp/model.js";
import { assertConsistent, assertMembersExist } from "../placement/itp/rules.js";
import { lockPlacement } from "./placement.js";
import type { Queryable } from "./store/db.js";
import { getHost, type HostRecord, updateHostLabels, updateHostPlacement } from "./store/hosts.js";
import {
  addGroupMembers,
  deletePlacementGroup,
  getPlacementGroup,
  insertPlacementGroup,
  listPlacementGroups,
  type PlacementGroupRecord,
  removeGroupMember,
} from "./store/placement-groups.js";
import type { Store } from "./store/store.js";

/** Host placement settings and placement groups. */
export class PlacementService {
  constructor(private readonly store: Store) {}

  /** Sets and removes a host's labels; a key both set and removed is refused. */
  async label(
    hostIdOrName: string,
    set: Record<string, string>,
    remove: readonly string[],
  ): Promise<HostRecord> {
    const both = remove.filter((k) => k in set);
    if (both.length > 0)
      throw new NovaError(
        "NOVA_UNPROCESSABLE",
        `Label ${both.join(", ")} is both set and removed; do one or the other.`,
        { details: { labels: both } },
      );
    if (Object.keys(set).length === 0 && remove.length === 0)
      throw new NovaError(
        "NOVA_UNPROCESSABLE",
        "Nothing to change: give labels as key=value, or --remove KEY.",
        { details: { field: "set" } },
      );
    return this.onHost(hostIdOrName, (tx, host) => updateHostLabels(tx, host, set, remove));
  }

  /** Sets a host's site (null: none). */
  setSite(hostIdOrName: string, site: string | null): Promise<HostRecord> {
    return this.onHost(hostIdOrName, (tx, host) => updateHostPlacement(tx, host, { site }));
  }

  /** Sets the operator's weight for a host, -1..1. */
  setWeight(hostIdOrName: string, weight: number): Promise<HostRecord> {
    return this.onHost(hostIdOrName, (tx, host) => updateHostPlacement(tx, host, { weight }));
  }

  private async onHost(
    idOrName: string,
    change: (tx: Queryable, host: HostRecord) => Promise<ClusterEvent>,
  ): Promise<HostRecord> {
    const id = await this.store.write(async (tx, emit) => {
      // Placement reads labels and sites under the lock: a change lands between placements.
      await lockPlacement(tx);
      const host = await getHost(tx, idOrName);
      emit(await change(tx, host));
      return host.id;
    });
    return getHost(this.store.read, id);
  }

  /** Creates a group; refused with nothing stored for unknown VMs or a contradiction. */
  async create(input: PlacementGroupsPost): Promise<PlacementGroupRecord> {
    const id = await this.store.write(async (tx, emit) => {
      await lockPlacement(tx);
      const group: PlacementGroup = {
        name: input.name,
        policy: input.policy,
        scope: input.scope ?? "host",
        enforcement: input.enforcement ?? "hard",
        members: input.members ?? [],
      };
      const vms = await this.vmIds(tx, group);
      const all = await listPlacementGroups(tx);
      assertConsistent([...all.map(itpGroup), group]);
      const made = await insertPlacementGroup(tx, { ...group, memberIds: [...vms.values()] });
      emit(made.event);
      return made.id;
    });
    return getPlacementGroup(this.store.read, id);
  }

  /** Adds VMs to a group; refused with nothing changed for unknown VMs or a contradiction. */
  async addMembers(groupIdOrName: string, vmNames: readonly string[]): Promise<PlacementGroupRecord> {
    const id = await this.store.write(async (tx, emit) => {
      await lockPlacement(tx);
      const g = await getPlacementGroup(tx, groupIdOrName);
      const added = vmNames.filter((n) => !g.members.includes(n));
      const next = { ...itpGroup(g), members: [...g.members, ...added] };
      const vms = await this.vmIds(tx, { ...next, members: added });
      const others = (await listPlacementGroups(tx)).filter((x) => x.id !== g.id);
      assertConsistent([...others.map(itpGroup), next]);
      if (added.length > 0)
        emit(
          await addGroupMembers(
            tx,
            g,
            [...vms.entries()].map(([name, vmId]) => ({ id: vmId, name })),
          ),
        );
      return g.id;
    });
    return getPlacementGroup(this.store.read, id);
  }

  /** Removes a VM from a group; NOVA_NOT_FOUND when it is not a member. */
  async removeMember(groupIdOrName: string, vmName: string): Promise<PlacementGroupRecord> {
    const id = await this.store.write(async (tx, emit) => {
      await lockPlacement(tx);
      const g = await getPlacementGroup(tx, groupIdOrName);
      const i = g.members.findIndex((m, k) => m === vmName || g.memberIds[k] === vmName);
      if (i < 0)
        throw new NovaError(
          "NOVA_NOT_FOUND",
          `VM ${vmName} is not a member of placement group ${g.name} (its members: ${g.members.join(", ") || "none"}).`,
          { details: { group: g.name, vm: vmName } },
        );
      emit(await removeGroupMember(tx, g, { id: g.memberIds[i]!, name: g.members[i]! }));
      return g.id;
    });
    return getPlacementGroup(this.store.read, id);
  }

  /** Deletes a group (its VMs stay where they are). */
  async delete(groupIdOrName: string): Promise<PlacementGroupRecord> {
    return this.store.write(async (tx, emit) => {
      await lockPlacement(tx);
      const g = await getPlacementGroup(tx, groupIdOrName);
      emit(await deletePlacementGroup(tx, g));
      return g;
    });
  }

  /** The ids of `group`'s members by name; NOVA_NOT_FOUND naming those that are not VMs. */
  private async vmIds(tx: Queryable, group: PlacementGroup): Promise<Map<string, string>> {
    if (group.members.length === 0) return new Map();
    const { rows } = await tx.query<{ id: string; name: string }>(
      "SELECT id, name FROM vms WHERE name = ANY($1::text[])",
      [group.members],
    );
    const ids = new Map(rows.map((r) => [r.name, r.id]));
    assertMembersExist(group, new Set(ids.keys()));
    return ids;
  }
}

function itpGroup(g: PlacementGroupRecord): PlacementGroup {
  return { name: g.name, policy: g.policy, scope: g.scope, enforcement: g.enforcement, members: g.members };
}
