/**
 * Wire types for placement (docs/placement.md): host labels, site and weight, placement
 * groups (affinity rules) as resources, and ITP's explanation of where a VM can go
 * (`vm create --dry-run`, `placement explain`).
 */
import { type Static, Type } from "@sinclair/typebox";
import { ResourceName, Uuid } from "./common.js";

/** A label key: a DNS-like name, optionally with a prefix (`zone`, `novacron.io/gpu`). */
export const LabelKey = Type.String({
  pattern: "^[a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?$",
  description: "1-63 lowercase letters, digits, dots, dashes, underscores and slashes",
});
/** A label value. */
export const LabelValue = Type.String({
  pattern: "^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$",
  description: "1-63 letters, digits, dots, dashes and underscores",
});
/** A set of labels (a host's, or a VM's host selector). */
export const HostLabels = Type.Record(LabelKey, LabelValue, {
  maxProperties: 32,
  // A key that does not match LabelKey is refused, not ignored.
  additionalProperties: false,
  description: "Labels (key → value), at most 32",
});

/** `POST /v1/hosts/{id}/labels`: set some labels and remove others. */
export const HostLabelsPost = Type.Object(
  {
    set: Type.Optional(HostLabels),
    remove: Type.Optional(Type.Array(LabelKey, { maxItems: 32, uniqueItems: true })),
  },
  { additionalProperties: false },
);
export type HostLabelsPost = Static<typeof HostLabelsPost>;

/** `PUT /v1/hosts/{id}/site`. */
export const HostSitePut = Type.Object(
  { site: Type.Union([ResourceName, Type.Null()], { description: "The host's site; null: none" }) },
  { additionalProperties: false },
);
export type HostSitePut = Static<typeof HostSitePut>;

/** `PUT /v1/hosts/{id}/weight`. */
export const HostWeightPut = Type.Object(
  {
    weight: Type.Number({
      minimum: -1,
      maximum: 1,
      description: "The operator's preference for the host, -1 (avoid) .. 1 (prefer); 0: none",
    }),
  },
  { additionalProperties: false },
);
export type HostWeightPut = Static<typeof HostWeightPut>;

export const GroupPolicy = Type.Union([Type.Literal("affinity"), Type.Literal("anti-affinity")], {
  description: "affinity: members run together; anti-affinity: apart",
});
export const GroupScope = Type.Union([Type.Literal("host"), Type.Literal("site")], {
  description: "Together or apart on a host, or within a site",
});
export const GroupEnforcement = Type.Union([Type.Literal("hard"), Type.Literal("soft")], {
  description: "hard: a host breaking the rule is not a candidate; soft: it only scores lower",
});

/** A placement group as the API shows it. */
export const PlacementGroup = Type.Object({
  id: Uuid,
  name: Type.String(),
  policy: GroupPolicy,
  scope: GroupScope,
  enforcement: GroupEnforcement,
  members: Type.Array(Type.String(), { description: "Member VM names" }),
  generation: Type.Integer({ description: "Bumped by every change of its members" }),
  createdAt: Type.String({ format: "date-time" }),
  updatedAt: Type.String({ format: "date-time" }),
});
export type PlacementGroup = Static<typeof PlacementGroup>;

/** `GET /v1/placement-groups`. */
export const PlacementGroupList = Type.Object({ groups: Type.Array(PlacementGroup) });
export type PlacementGroupList = Static<typeof PlacementGroupList>;

/** The most members a group holds. */
export const MAX_GROUP_MEMBERS = 1000;

/** `POST /v1/placement-groups`. */
export const PlacementGroupsPost = Type.Object(
  {
    name: ResourceName,
    policy: GroupPolicy,
    scope: Type.Optional(Type.Union([Type.Literal("host"), Type.Literal("site")], { default: "host" })),
    enforcement: Type.Optional(Type.Union([Type.Literal("hard"), Type.Literal("soft")], { default: "hard" })),
    members: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 63 }), {
        maxItems: MAX_GROUP_MEMBERS,
        uniqueItems: true,
        description: "Member VMs by name",
      }),
    ),
  },
  { additionalProperties: false },
);
export type PlacementGroupsPost = Static<typeof PlacementGroupsPost>;

/** `POST /v1/placement-groups/{id}/members`: VMs to add. */
export const PlacementGroupMembersPost = Type.Object(
  {
    vms: Type.Array(Type.String({ minLength: 1, maxLength: 63 }), {
      minItems: 1,
      maxItems: MAX_GROUP_MEMBERS,
      uniqueItems: true,
    }),
  },
  { additionalProperties: false },
);
export type PlacementGroupMembersPost = Static<typeof PlacementGroupMembersPost>;

/** `DELETE /v1/placement-groups/{id}/members/{vm}`. */
export const PlacementGroupMemberParams = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 255 }),
  vm: Type.String({ minLength: 1, maxLength: 255 }),
});
export type PlacementGroupMemberParams = Static<typeof PlacementGroupMemberParams>;

/** One host's verdict: rejected by its first failed check (and why), or scored. */
export const HostVerdict = Type.Union([
  Type.Object({
    host: Type.String(),
    feasible: Type.Literal(false),
    rejectedBy: Type.String({ description: "The check it failed first (docs/placement.md)" }),
    reason: Type.String(),
  }),
  Type.Object({
    host: Type.String(),
    feasible: Type.Literal(true),
    score: Type.Number({ description: "The weighted sum of the scores" }),
    scores: Type.Record(Type.String(), Type.Number(), { description: "Each scorer's score" }),
  }),
]);
export type HostVerdict = Static<typeof HostVerdict>;

/** Why a VM goes (or would go) where it goes. */
export const PlacementExplanation = Type.Object({
  vm: Type.String(),
  chosen: Type.Union([Type.String(), Type.Null()], {
    description: "The chosen host; null: none can take it",
  }),
  hosts: Type.Array(HostVerdict, { description: "Every host, best first; rejected ones after" }),
  rejected: Type.Record(Type.String(), Type.Integer(), {
    description: "Hosts turned away by each check (each counted at the first it failed)",
  }),
  policy: Type.Object({
    strategy: Type.String(),
    memoryOvercommit: Type.Number(),
    vcpuOvercommit: Type.Number(),
  }),
});
export type PlacementExplanation = Static<typeof PlacementExplanation>;

/** `POST /v1/vms?dryRun=true`: what a create would do, with nothing created. */
export const VmDryRun = Type.Object({
  dryRun: Type.Literal(true),
  vm: Type.String(),
  host: Type.Union([Type.String(), Type.Null()], { description: "The host it would be placed on" }),
  explanation: PlacementExplanation,
});
export type VmDryRun = Static<typeof VmDryRun>;
