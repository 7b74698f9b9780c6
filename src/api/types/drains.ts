/** Wire types for a host's maintenance drain: start it, read it (with its per-VM report), cancel it. */
import { type Static, Type } from "@sinclair/typebox";
import { DRAIN, DRAIN_VM } from "../../states/drain.js";
import { Uuid } from "./common.js";
import { stateUnion } from "./state-schema.js";

/** The most live migrations a drain keeps under way at once (the migration scheduler's per-host limit applies too). */
export const MAX_DRAIN_CONCURRENCY = 4;

/** `POST /v1/hosts/{id}/drain` body. */
export const HostDrainPost = Type.Object(
  {
    concurrency: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: MAX_DRAIN_CONCURRENCY,
        default: 1,
        description:
          "How many VMs move at once; more are started as moves end. The migration scheduler's per-host limit (2 by default) also applies.",
      }),
    ),
  },
  { additionalProperties: false },
);
export type HostDrainPost = Static<typeof HostDrainPost>;

/** One VM in a drain's report. */
export const HostDrainVm = Type.Object({
  vm: Type.String(),
  vmId: Type.Union([Uuid, Type.Null()], { description: "null once the VM was deleted" }),
  state: stateUnion(DRAIN_VM),
  migrationId: Type.Union([Uuid, Type.Null()], { description: "The live migration that moves or moved it" }),
  targetHost: Type.Union([Type.String(), Type.Null()], {
    description: "Where it runs now (moved) or goes (moving)",
  }),
  code: Type.Union([Type.String(), Type.Null()], {
    description: "Why it could not move: a NOVA_ code (failed, left, gone)",
  }),
  reason: Type.String(),
  attempts: Type.Integer({
    description: "Moves tried so far; a failed move is retried up to 3 attempts in all",
  }),
  lastAttemptAt: Type.Union([Type.String({ format: "date-time" }), Type.Null()]),
  updatedAt: Type.String({ format: "date-time" }),
});
export type HostDrainVm = Static<typeof HostDrainVm>;

/** A drain of a host, with every VM it moved or reports. */
export const HostDrain = Type.Object({
  id: Uuid,
  hostId: Uuid,
  host: Type.String(),
  state: stateUnion(DRAIN),
  stateReason: Type.String(),
  concurrency: Type.Integer(),
  cancelRequested: Type.Boolean(),
  requestedBy: Type.String(),
  vms: Type.Array(HostDrainVm),
  createdAt: Type.String({ format: "date-time" }),
  updatedAt: Type.String({ format: "date-time" }),
  finishedAt: Type.Union([Type.String({ format: "date-time" }), Type.Null()]),
});
export type HostDrain = Static<typeof HostDrain>;

/** What `GET /v1/hosts` shows of a host's newest drain. */
export const HostDrainSummary = Type.Object({
  id: Uuid,
  state: stateUnion(DRAIN),
  cancelRequested: Type.Boolean(),
});
export type HostDrainSummary = Static<typeof HostDrainSummary>;
