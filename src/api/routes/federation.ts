/**
 * Routes: /v1/federation — peering tokens, adding, listing and removing peers, lifting a
 * quarantine, the evidence, and the global view (clusters and VMs). /v1/federation/redeem
 * is the one route another cluster's server calls: it carries no bearer token, the
 * peering token's secret and the caller's client certificate authenticate it.
 */
import { X509Certificate } from "node:crypto";
import { TLSSocket } from "node:tls";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "@sinclair/typebox";
import type { Federation } from "../../federation/federation.js";
import { HandoffList } from "../types/acp.js";
import {
  EvidenceList,
  FederatedClusterList,
  FederatedVmList,
  Peer,
  PeerAddPost,
  PeeringTokenCreated,
  PeeringTokenPost,
  PeerList,
  PeerRemoved,
  RedeemRequest,
  RedeemResponse,
} from "../types/federation.js";
import type { RouteDeps } from "./deps.js";

const PeerParams = Type.Object({ name: Type.String({ minLength: 1, maxLength: 128 }) });

/** The caller's client certificate (verified or not: redeem checks it against the caller's card). */
function clientCertPem(socket: unknown): string | undefined {
  if (!(socket instanceof TLSSocket)) return undefined;
  const raw = socket.getPeerCertificate()?.raw;
  return raw ? new X509Certificate(raw).toString() : undefined;
}

/** Federation routes. */
export const federationRoutes: FastifyPluginAsyncTypebox<RouteDeps & { federation: Federation }> = async (
  app,
  { federation, guard },
) => {
  app.post(
    "/v1/federation/tokens",
    {
      schema: {
        tags: ["federation"],
        body: Type.Optional(PeeringTokenPost),
        response: { 201: PeeringTokenCreated },
      },
      onRequest: guard("federation:write"),
    },
    async (req, reply) =>
      reply
        .status(201)
        .send(await federation.createToken(req.principal?.name ?? "unknown", req.body?.ttlSeconds ?? 3600)),
  );

  app.post(
    "/v1/federation/redeem",
    { schema: { tags: ["federation"], body: RedeemRequest, response: { 200: RedeemResponse } } },
    async (req) => federation.redeem(req.body, clientCertPem(req.raw.socket)),
  );

  app.post(
    "/v1/federation/peers",
    {
      schema: { tags: ["federation"], body: PeerAddPost, response: { 201: Peer } },
      onRequest: guard("federation:write"),
    },
    async (req, reply) => reply.status(201).send(await federation.addPeer(req.body.token)),
  );

  app.get(
    "/v1/federation/peers",
    { schema: { tags: ["federation"], response: { 200: PeerList } }, onRequest: guard("federation:read") },
    async () => ({ peers: await federation.listPeers() }),
  );

  app.delete(
    "/v1/federation/peers/:name",
    {
      schema: { tags: ["federation"], params: PeerParams, response: { 200: PeerRemoved } },
      onRequest: guard("federation:write"),
    },
    async (req) => federation.removePeer(req.params.name),
  );

  app.post(
    "/v1/federation/peers/:name/unquarantine",
    {
      schema: { tags: ["federation"], params: PeerParams, response: { 200: Peer } },
      onRequest: guard("federation:write"),
    },
    async (req) => federation.liftQuarantine(req.params.name),
  );

  app.get(
    "/v1/federation/peers/:name/evidence",
    {
      schema: { tags: ["federation"], params: PeerParams, response: { 200: EvidenceList } },
      onRequest: guard("federation:read"),
    },
    async (req) => ({ evidence: await federation.evidence(req.params.name) }),
  );

  app.get(
    "/v1/federation/clusters",
    {
      schema: { tags: ["federation"], response: { 200: FederatedClusterList } },
      onRequest: guard("federation:read"),
    },
    async () => ({ clusters: await federation.clusters() }),
  );

  app.get(
    "/v1/federation/vms",
    {
      schema: { tags: ["federation"], response: { 200: FederatedVmList } },
      onRequest: guard("federation:read"),
    },
    async () => ({ vms: await federation.vms() }),
  );

  app.get(
    "/v1/federation/handoffs",
    {
      schema: { tags: ["federation"], response: { 200: HandoffList } },
      onRequest: guard("federation:read"),
    },
    async () => ({ handoffs: await federation.handoffs() }),
  );
};
