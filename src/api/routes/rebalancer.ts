/**
 * Routes: /v1/rebalancer — the rebalancer's settings (read, change) and its plan: what it
 * would move now and why nothing else (docs/placement.md "Rebalancing").
 */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { appendEvent } from "../../cluster/store/events.js";
import { getRebalanceSettings, updateRebalanceSettings } from "../../cluster/store/host-load.js";
import type { Rebalancer } from "../../migration/rebalancer.js";
import { RebalancerPlan, RebalancerSettings, RebalancerSettingsPatch } from "../types/rebalancer.js";
import type { RouteDeps } from "./deps.js";

/** Rebalancer routes. */
export const rebalancerRoutes: FastifyPluginAsyncTypebox<RouteDeps & { rebalancer: Rebalancer }> = async (
  app,
  { store, guard, rebalancer },
) => {
  app.get(
    "/v1/rebalancer",
    {
      schema: { tags: ["rebalancer"], response: { 200: RebalancerSettings } },
      onRequest: guard("hosts:read"),
    },
    async () => getRebalanceSettings(store.read),
  );

  app.patch(
    "/v1/rebalancer",
    {
      schema: { tags: ["rebalancer"], body: RebalancerSettingsPatch, response: { 200: RebalancerSettings } },
      onRequest: guard("hosts:write"),
    },
    async (req) => {
      const settings = await store.write(async (tx, emit) => {
        const updated = await updateRebalanceSettings(tx, req.body, req.principal?.name ?? "unknown");
        emit(
          await appendEvent(tx, {
            type: "rebalancer.settings",
            resourceType: "rebalancer",
            resourceId: null,
            data: { change: req.body, by: updated.updatedBy },
          }),
        );
        return updated;
      });
      rebalancer.wake();
      return settings;
    },
  );

  app.get(
    "/v1/rebalancer/plan",
    { schema: { tags: ["rebalancer"], response: { 200: RebalancerPlan } }, onRequest: guard("hosts:read") },
    async () => {
      const plan = await rebalancer.preview();
      const { enabled } = await getRebalanceSettings(store.read);
      return {
        enabled,
        passes: rebalancer.passes,
        lastPassAt: rebalancer.lastPassAt?.toISOString() ?? null,
        mean: plan.mean,
        ...(plan.idle ? { idle: plan.idle } : {}),
        moves: plan.moves.map((m) => ({
          vm: m.vm,
          vmId: m.vmId,
          from: m.from,
          to: m.to,
          before: m.before,
          after: m.after,
          gain: m.gain,
        })),
        hosts: plan.hosts,
      };
    },
  );
};
