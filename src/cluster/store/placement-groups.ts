/**
 * The placement_groups and placement_group_members tables: placement groups (affinity
 * rules, docs/placement.md) and their member VMs. Every change of a group is a
 * compare-and-set on its generation, so two edits of one group never interleave
 * unnoticed; a deleted VM leaves its groups (ON DELETE CASCADE).
 */
import { randomUUID } from "node:crypto";
import type { ClusterEvent } from "../../api/types/events.js";
import type { PlacementGroup } from "../../api/types/placement.js";
import { NovaError } from "../../lib/errors.js";
import type { Queryable, ReadQueryable } from "./db.js";
import { appendEvent } from "./events.js";

/** The most groups a cluster holds (every read of them is bounded). */
export const MAX_PLACEMENT_GROUPS = 10_000;

/** A placement group with its members' ids (the API shows their names). */
export interface PlacementGroupRecord extends PlacementGroup {
  memberIds: string[];
}

interface GroupRow {
  id: string;
  name: string;
  policy: PlacementGroup["policy"];
  scope: PlacementGroup["scope"];
  enforcement: PlacementGroup["enforcement"];
  generation: number;
  created_at: Date;
  updated_at: Date;
  members: { id: string; name: string }[] | null;
}

const SELECT_GROUPS = `
  SELECT g.*,
    (SELECT json_agg(json_build_object('id', v.id, 'name', v.name) ORDER BY v.name)
       FROM placement_group_members m JOIN vms v ON v.id = m.vm_id WHERE m.group_id = g.id) AS members
  FROM placement_groups g`;

function toGroup(row: GroupRow): PlacementGroupRecord {
  const members = row.members ?? [];
  return {
    id: row.id,
    name: row.name,
    policy: row.policy,
    scope: row.scope,
    enforcement: row.enforcement,
    members: members.map((m) => m.name),
    memberIds: members.map((m) => m.id),
    generation: row.generation,
    createdAt: new Date(row.created_at).toISOString(),
    updatedAt: new Date(row.updated_at).toISOString(),
  };
}

/** Strips internal fields for API output. */
export function publicGroup(g: PlacementGroupRecord): PlacementGroup {
  const { memberIds: _m, ...rest } = g;
  return rest;
}

/** Every placement group, by name. */
export async function listPlacementGroups(q: ReadQueryable): Promise<PlacementGroupRecord[]> {
  const { rows } = await q.query<GroupRow>(`${SELECT_GROUPS} ORDER BY g.name LIMIT ${MAX_PLACEMENT_GROUPS}`);
  return rows.map(toGroup);
}

/** A group by id or name; NOVA_NOT_FOUND otherwise. */
export async function getPlacementGroup(q: ReadQueryable, idOrName: string): Promise<PlacementGroupRecord> {
  const { rows } = await q.query<GroupRow>(`${SELECT_GROUPS} WHERE g.name = $1 OR g.id::text = $1`, [
    idOrName,
  ]);
  if (!rows[0])
    throw new NovaError(
      "NOVA_NOT_FOUND",
      `Placement group ${idOrName} not found. List groups with: novacron placement group list`,
      { details: { group: idOrName } },
    );
  return toGroup(rows[0]);
}

/** Fields of a new group. */
export interface NewPlacementGroup {
  name: string;
  policy: PlacementGroup["policy"];
  scope: PlacementGroup["scope"];
  enforcement: PlacementGroup["enforcement"];
  memberIds: readonly string[];
}

/** Inserts a group and its members with its event; NOVA_CONFLICT when the name is taken. */
export async function insertPlacementGroup(
  q: Queryable,
  g: NewPlacementGroup,
): Promise<{ id: string; event: ClusterEvent }> {
  const id = randomUUID();
  const { rowCount } = await q.query(
    `INSERT INTO placement_groups (id, name, policy, scope, enforcement) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (name) DO NOTHING`,
    [id, g.name, g.policy, g.scope, g.enforcement],
  );
  if (rowCount === 0)
    throw new NovaError(
      "NOVA_CONFLICT",
      `A placement group named ${g.name} already exists. Pick another name, or change its members with novacron placement group add-member.`,
      { details: { group: g.name } },
    );
  await insertMembers(q, id, g.memberIds);
  const event = await appendEvent(q, {
    type: "placement-group.created",
    resourceType: "placement-group",
    resourceId: id,
    data: {
      name: g.name,
      policy: g.policy,
      scope: g.scope,
      enforcement: g.enforcement,
      members: g.memberIds.length,
    },
  });
  return { id, event };
}

async function insertMembers(q: Queryable, groupId: string, vmIds: readonly string[]): Promise<void> {
  if (vmIds.length === 0) return;
  await q.query(
    `INSERT INTO placement_group_members (group_id, vm_id) SELECT $1, unnest($2::uuid[]) ON CONFLICT DO NOTHING`,
    [groupId, vmIds],
  );
}

/** Bumps the group's generation if it is still `g.generation`; NOVA_STATE_CHANGED otherwise. */
async function claim(q: Queryable, g: PlacementGroupRecord, change: string): Promise<void> {
  const { rowCount } = await q.query(
    "UPDATE placement_groups SET generation = generation + 1, updated_at = now() WHERE id = $1 AND generation = $2",
    [g.id, g.generation],
  );
  if (rowCount === 0)
    throw new NovaError(
      "NOVA_STATE_CHANGED",
      `Cannot ${change} placement group ${g.name}: it changed meanwhile (another writer got there first, or it was deleted). Read it again and retry.`,
      { details: { group: g.name, generation: g.generation } },
    );
}

/** Adds VMs to a group (compare-and-set on its generation), with its event. */
export async function addGroupMembers(
  q: Queryable,
  g: PlacementGroupRecord,
  vms: readonly { id: string; name: string }[],
): Promise<ClusterEvent> {
  await claim(q, g, "add members to");
  await insertMembers(
    q,
    g.id,
    vms.map((v) => v.id),
  );
  return appendEvent(q, {
    type: "placement-group.members",
    resourceType: "placement-group",
    resourceId: g.id,
    data: { name: g.name, added: vms.map((v) => v.name) },
  });
}

/** Removes a VM from a group (compare-and-set on its generation), with its event. */
export async function removeGroupMember(
  q: Queryable,
  g: PlacementGroupRecord,
  vm: { id: string; name: string },
): Promise<ClusterEvent> {
  await claim(q, g, "remove a member of");
  await q.query("DELETE FROM placement_group_members WHERE group_id = $1 AND vm_id = $2", [g.id, vm.id]);
  return appendEvent(q, {
    type: "placement-group.members",
    resourceType: "placement-group",
    resourceId: g.id,
    data: { name: g.name, removed: [vm.name] },
  });
}

/** Deletes a group (compare-and-set on its generation), with its event. */
export async function deletePlacementGroup(q: Queryable, g: PlacementGroupRecord): Promise<ClusterEvent> {
  const { rowCount } = await q.query("DELETE FROM placement_groups WHERE id = $1 AND generation = $2", [
    g.id,
    g.generation,
  ]);
  if (rowCount === 0)
    throw new NovaError(
      "NOVA_STATE_CHANGED",
      `Cannot delete placement group ${g.name}: it changed meanwhile. Read it again and retry.`,
      { details: { group: g.name, generation: g.generation } },
    );
  return appendEvent(q, {
    type: "placement-group.deleted",
    resourceType: "placement-group",
    resourceId: g.id,
    data: { name: g.name },
  });
}
