/** Wire types of the rebalancer: its settings, and what it would move now and why (docs/placement.md "Rebalancing"). */
import { type Static, Type } from "@sinclair/typebox";
import { Uuid } from "./common.js";

const settingsFields = {
  enabled: Type.Boolean({ description: "Off by default: nothing moves until it is turned on" }),
  threshold: Type.Number({
    minimum: 0.01,
    maximum: 1,
    description:
      "A host is overloaded when its CPU utilization exceeds the hosts' mean by more than this (0..1)",
  }),
  minUtilization: Type.Number({
    minimum: 0,
    maximum: 1,
    description: "A host this busy or less is never overloaded (0..1)",
  }),
  holdMs: Type.Integer({
    minimum: 0,
    maximum: 86_400_000,
    description: "How long a host stays overloaded before a VM moves off it",
  }),
  margin: Type.Number({
    minimum: 0.01,
    maximum: 1,
    description: "How much a move must narrow the gap between the two hosts' utilizations",
  }),
  cooldownMs: Type.Integer({
    minimum: 0,
    maximum: 604_800_000,
    description: "A VM that moved (for any reason) stays put this long",
  }),
  maxPerHost: Type.Integer({ minimum: 1, maximum: 16, description: "Migrations touching one host at once" }),
  maxPerCluster: Type.Integer({ minimum: 1, maximum: 256, description: "Migrations in the cluster at once" }),
  windowMs: Type.Integer({
    minimum: 1000,
    maximum: 3_600_000,
    description: "Utilization is averaged over this window of the agents' samples",
  }),
};

/** `GET /v1/rebalancer`. */
export const RebalancerSettings = Type.Object({
  ...settingsFields,
  updatedBy: Type.String(),
  updatedAt: Type.String({ format: "date-time" }),
});
export type RebalancerSettings = Static<typeof RebalancerSettings>;

/** `PATCH /v1/rebalancer`: the settings to change; the others stay. */
export const RebalancerSettingsPatch = Type.Partial(Type.Object(settingsFields), {
  additionalProperties: false,
  minProperties: 1,
});
export type RebalancerSettingsPatch = Static<typeof RebalancerSettingsPatch>;

const Utilization = Type.Number({
  description: "CPU used by the host's VMs over its vCPUs (0..1, more when overcommitted)",
});

/** `GET /v1/rebalancer/plan`: what a pass would do now. */
export const RebalancerPlan = Type.Object({
  enabled: Type.Boolean(),
  passes: Type.Integer({ description: "Passes the answering server ran since it started" }),
  lastPassAt: Type.Union([Type.String({ format: "date-time" }), Type.Null()], {
    description: "When the answering server's last pass ended; null: none yet",
  }),
  mean: Type.Union([Utilization, Type.Null()], {
    description: "The mean utilization of the hosts taking part",
  }),
  idle: Type.Optional(Type.String({ description: "Why nothing was considered at all" })),
  moves: Type.Array(
    Type.Object({
      vm: Type.String(),
      vmId: Uuid,
      from: Type.String(),
      to: Type.String(),
      before: Type.Object({ from: Type.Number(), to: Type.Number() }),
      after: Type.Object({ from: Type.Number(), to: Type.Number() }),
      gain: Type.Number({ description: "How much the move narrows the two hosts' gap" }),
    }),
  ),
  hosts: Type.Array(
    Type.Object({
      host: Type.String(),
      utilization: Type.Union([Utilization, Type.Null()], { description: "null: no figures from its agent" }),
      overloaded: Type.Boolean(),
      overloadedForMs: Type.Integer({
        description: "How long it has been overloaded, as this server saw it",
      }),
      note: Type.Optional(Type.String({ description: "Why it gives up no VM now, or what it gives up" })),
    }),
  ),
});
export type RebalancerPlan = Static<typeof RebalancerPlan>;
