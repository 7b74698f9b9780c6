/**
 * Routes agents call: /v1/agent/register (a join token, or the host's own certificate to
 * re-register and renew it), /v1/agent/heartbeat (host certificate).
 */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { revokedScraperSerials } from "../../cluster/store/scraper-certs.js";
import { bearerToken } from "../../lib/bearer.js";
import { NovaError } from "../../lib/errors.js";
import { verifiedPeerCert } from "../auth.js";
import {
  AgentHeartbeatPost,
  AgentHeartbeatReply,
  AgentRegisterPost,
  AgentRegisterResponse,
} from "../types/agent.js";
import type { RouteDeps } from "./deps.js";

/** Agent-facing routes. */
export const agentRoutes: FastifyPluginAsyncTypebox<RouteDeps> = async (app, { hosts, guard, store }) => {
  app.post(
    "/v1/agent/register",
    {
      schema: { tags: ["agent"], body: AgentRegisterPost, response: { 200: AgentRegisterResponse } },
    },
    async (req) => {
      if (req.headers.authorization) return hosts.register(req.body, { joinToken: bearerToken(req) });
      const cert = verifiedPeerCert(req);
      if (!cert) {
        throw new NovaError(
          "NOVA_UNAUTHENTICATED",
          "Registering needs a join token (novacron host join-token <name>) or, for a host already joined, its own client certificate.",
        );
      }
      return hosts.register(req.body, { certSerial: cert.serial });
    },
  );

  app.post(
    "/v1/agent/heartbeat",
    {
      schema: {
        tags: ["agent"],
        body: AgentHeartbeatPost,
        response: { 200: AgentHeartbeatReply },
      },
      onRequest: guard("agent:heartbeat"),
    },
    async (req) => {
      const ha = await hosts.heartbeat(req.principal!.id, req.body);
      // Agents refuse these scrapers' certificates on their /metrics (they cannot ask the database).
      return { ok: true, revokedScrapers: await revokedScraperSerials(store.read), ...ha };
    },
  );
};
