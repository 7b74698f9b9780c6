/**
 * The agent's routes for copying an image to another cluster (docs/agent-protocol.md,
 * "Image copy between clusters"): thin adapters over the DWCP transport's offers (the
 * source host) and pulls (the destination host). Server-only, like every route but blob
 * downloads.
 */
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import {
  type AgentImageOffer,
  AgentImageOfferPost,
  AgentImagePullStart,
  type AgentImagePullStatus,
} from "../api/types/agent.js";
import { NovaError } from "../lib/errors.js";
import type { AgentDwcp } from "./dwcp-transport.js";

const OfferParams = Type.Object({ id: Type.String({ pattern: "^[0-9a-f-]{36}$" }) });

/** Registers the image-copy routes; without DWCP they answer NOVA_UNPROCESSABLE. */
export function registerImageCopyRoutes(app: FastifyInstance, dwcp: AgentDwcp | null | undefined): void {
  const transport = (): AgentDwcp => {
    if (!dwcp)
      throw new NovaError(
        "NOVA_UNPROCESSABLE",
        "This agent runs without DWCP: it cannot copy images between clusters",
      );
    return dwcp;
  };

  app.post<{ Body: AgentImageOfferPost }>(
    "/agent/v1/image-offers",
    { schema: { body: AgentImageOfferPost } },
    async (req): Promise<AgentImageOffer> =>
      transport().offerImage(req.body.id, req.body.digests, req.body.peerCaPem, req.body.ttlSeconds * 1000),
  );

  app.delete<{ Params: { id: string } }>(
    "/agent/v1/image-offers/:id",
    { schema: { params: OfferParams } },
    async (req) => ({ withdrawn: transport().withdrawImageOffer(req.params.id) }),
  );

  app.post<{ Body: AgentImagePullStart }>(
    "/agent/v1/image-pulls",
    { schema: { body: AgentImagePullStart } },
    async (req): Promise<AgentImagePullStatus> =>
      transport().pullImage({
        id: req.body.id,
        endpoint: req.body.offer.endpoint,
        token: req.body.offer.token,
        peerCaPem: req.body.peerCaPem,
        blobs: req.body.offer.blobs,
      }),
  );
}
