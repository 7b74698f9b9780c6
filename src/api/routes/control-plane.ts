/**
 * Route: `GET /v1/control-plane` — the server replicas on this cluster's database, which
 * one leads (the lease: holder, epoch, since when) and which replica answered. Any replica
 * answers from the database, so the answer is the same whichever one is asked.
 */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { ControlPlane } from "../../api/types/control-plane.js";
import type { LeadershipStatus } from "../../cluster/leadership.js";
import { listReplicas, readLease } from "../../cluster/store/control-plane.js";
import type { RouteDeps } from "./deps.js";

/** What the route needs beyond the common dependencies. */
export interface ControlPlaneRouteDeps extends RouteDeps {
  controlPlane: { status: () => LeadershipStatus; leaseTtlMs: number };
}

/** The control-plane route. */
export const controlPlaneRoutes: FastifyPluginAsyncTypebox<ControlPlaneRouteDeps> = async (
  app,
  { guard, store, controlPlane },
) => {
  app.get(
    "/v1/control-plane",
    { schema: { tags: ["control-plane"], response: { 200: ControlPlane } }, onRequest: guard("hosts:read") },
    async () => {
      const [lease, replicas] = await Promise.all([readLease(store.read), listReplicas(store.read)]);
      const liveWithin = (2 * controlPlane.leaseTtlMs) / 1000;
      const held = lease.holder !== null && lease.expiresInMs > 0;
      const leaderRow = held ? replicas.find((r) => r.id === lease.holder) : undefined;
      return {
        self: controlPlane.status().replicaId,
        leader: held
          ? {
              replica: lease.holder!,
              apiUrl: leaderRow?.apiUrl ?? null,
              epoch: lease.epoch,
              since: lease.acquiredAt,
              expiresInMs: lease.expiresInMs,
            }
          : null,
        epoch: lease.epoch,
        leaseTtlMs: controlPlane.leaseTtlMs,
        replicas: replicas.map((r) => ({
          ...r,
          leader: held && r.id === lease.holder,
          live: r.lastSeenAgeSeconds <= liveWithin,
        })),
      };
    },
  );
};
