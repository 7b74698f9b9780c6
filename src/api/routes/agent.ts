/** Routes agents call: /v1/agent/register (join token), /v1/agent/heartbeat (host credential). */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "@sinclair/typebox";
import { AgentHeartbeatPost, AgentRegisterPost, AgentRegisterResponse } from "../types/agent.js";
import type { RouteDeps } from "./deps.js";

/** Agent-facing routes. */
export const agentRoutes: FastifyPluginAsyncTypebox<RouteDeps> = async (app, { hosts, guard }) => {
  app.post(
    "/v1/agent/register",
    {
      schema: { tags: ["agent"], body: AgentRegisterPost, response: { 200: AgentRegisterResponse } },
      preHandler: guard("agent:register"),
    },
    async (req) => hosts.register(req.body),
  );

  app.post(
    "/v1/agent/heartbeat",
    {
      schema: {
        tags: ["agent"],
        body: AgentHeartbeatPost,
        response: { 200: Type.Object({ ok: Type.Boolean() }) },
      },
      preHandler: guard("agent:heartbeat"),
    },
    async (req) => {
      await hosts.heartbeat(req.principal!.id, req.body);
      return { ok: true };
    },
  );
};
