/** Wire types of `GET /v1/control-plane`: the server replicas on this cluster's database and which one leads. */
import { type Static, Type } from "@sinclair/typebox";

/** One server replica, as the database last saw it. */
export const ControlPlaneReplica = Type.Object({
  id: Type.String({ description: "The replica's id (new at every start of a server process)" }),
  apiUrl: Type.String(),
  hostName: Type.String(),
  version: Type.String(),
  startedAt: Type.String({ format: "date-time" }),
  lastSeenAt: Type.String({ format: "date-time" }),
  lastSeenAgeSeconds: Type.Number({ description: "By the database's clock" }),
  leader: Type.Boolean(),
  /** Seen within two lease TTLs. */
  live: Type.Boolean(),
});
export type ControlPlaneReplica = Static<typeof ControlPlaneReplica>;

/** The control plane. */
export const ControlPlane = Type.Object({
  /** The replica that answered this request. */
  self: Type.String(),
  leader: Type.Union([
    Type.Object({
      replica: Type.String(),
      apiUrl: Type.Union([Type.String(), Type.Null()]),
      epoch: Type.Integer(),
      since: Type.Union([Type.String({ format: "date-time" }), Type.Null()]),
      /** Milliseconds until the lease runs out unless renewed (database clock). */
      expiresInMs: Type.Integer(),
    }),
    Type.Null(),
  ]),
  epoch: Type.Integer({ description: "The lease's epoch: one more for every change of leader" }),
  leaseTtlMs: Type.Integer(),
  replicas: Type.Array(ControlPlaneReplica),
});
export type ControlPlane = Static<typeof ControlPlane>;
