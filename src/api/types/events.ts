/** Wire type of one event on `/v1/events` (SSE) and in the events table. */
import { type Static, Type } from "@sinclair/typebox";

/** A state change somewhere in the cluster. */
export const ClusterEvent = Type.Object({
  id: Type.Number(),
  at: Type.String({ format: "date-time" }),
  type: Type.String({ description: "e.g. vm.state, host.liveness, image.imported" }),
  resourceType: Type.String(),
  resourceId: Type.Union([Type.String(), Type.Null()]),
  data: Type.Record(Type.String(), Type.Unknown()),
});
export type ClusterEvent = Static<typeof ClusterEvent>;
