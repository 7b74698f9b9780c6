/**
 * Routes: /v1/hosts — list, show, cordon, uncordon, remove, and the maintenance drain
 * (start, read, cancel); /v1/join-tokens — make and list join tokens.
 */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "@sinclair/typebox";
import { getHost, listHosts } from "../../cluster/store/hosts.js";
import { listJoinTokens } from "../../cluster/store/join-tokens.js";
import { IdOrNameParams } from "../types/common.js";
import { HostDrain, HostDrainPost } from "../types/drains.js";
import {
  Host,
  HostCordonPost,
  HostList,
  HostRemoved,
  JoinTokenCreated,
  JoinTokenList,
  JoinTokenPost,
} from "../types/hosts.js";
import type { RouteDeps } from "./deps.js";

/** Host routes. */
export const hostRoutes: FastifyPluginAsyncTypebox<RouteDeps> = async (
  app,
  { store, hosts, drains, guard, caFingerprint },
) => {
  app.post(
    "/v1/join-tokens",
    {
      schema: { tags: ["hosts"], body: JoinTokenPost, response: { 200: JoinTokenCreated } },
      onRequest: guard("hosts:write"),
    },
    async (req) => {
      const made = await hosts.createJoinToken({
        name: req.body.name,
        ttlSeconds: req.body.ttlSeconds ?? 3600,
        replace: req.body.replace ?? false,
        createdBy: req.principal?.name ?? "unknown",
        caFingerprint,
      });
      return { token: made.token, caFingerprint, info: made.info };
    },
  );

  app.get(
    "/v1/join-tokens",
    { schema: { tags: ["hosts"], response: { 200: JoinTokenList } }, onRequest: guard("hosts:read") },
    async () => ({ tokens: await listJoinTokens(store.read) }),
  );

  app.delete(
    "/v1/hosts/:id",
    {
      schema: { tags: ["hosts"], params: IdOrNameParams, response: { 200: HostRemoved } },
      onRequest: guard("hosts:write"),
    },
    async (req) => hosts.remove(req.params.id),
  );

  app.get(
    "/v1/hosts",
    { schema: { tags: ["hosts"], response: { 200: HostList } }, onRequest: guard("hosts:read") },
    async () => ({
      hosts: await listHosts(store.read),
    }),
  );

  app.get(
    "/v1/hosts/:id",
    {
      schema: { tags: ["hosts"], params: IdOrNameParams, response: { 200: Host } },
      onRequest: guard("hosts:read"),
    },
    async (req) => getHost(store.read, req.params.id),
  );

  app.post(
    "/v1/hosts/:id/cordon",
    {
      schema: { tags: ["hosts"], params: IdOrNameParams, body: HostCordonPost, response: { 200: Host } },
      onRequest: guard("hosts:write"),
    },
    async (req) => hosts.cordon(req.params.id, req.body.cordoned ?? true),
  );

  app.post(
    "/v1/hosts/:id/uncordon",
    {
      schema: { tags: ["hosts"], params: IdOrNameParams, response: { 200: Host } },
      onRequest: guard("hosts:write"),
    },
    async (req) => hosts.cordon(req.params.id, false),
  );

  app.post(
    "/v1/hosts/:id/drain",
    {
      schema: {
        tags: ["hosts"],
        params: IdOrNameParams,
        body: Type.Optional(HostDrainPost),
        response: { 202: HostDrain },
      },
      // The body is optional (docs/api.md): a POST without one validates as `{}`.
      preValidation: async (req: { body: unknown }) => {
        req.body ??= {};
      },
      onRequest: guard("hosts:write"),
    },
    async (req, reply) =>
      reply
        .status(202)
        .send(await drains.start(req.params.id, req.body ?? {}, req.principal?.name ?? "unknown")),
  );

  app.get(
    "/v1/hosts/:id/drain",
    {
      schema: { tags: ["hosts"], params: IdOrNameParams, response: { 200: HostDrain } },
      onRequest: guard("hosts:read"),
    },
    async (req) => drains.latest(req.params.id),
  );

  app.delete(
    "/v1/hosts/:id/drain",
    {
      schema: { tags: ["hosts"], params: IdOrNameParams, response: { 202: HostDrain } },
      onRequest: guard("hosts:write"),
    },
    async (req, reply) =>
      reply.status(202).send(await drains.cancel(req.params.id, req.principal?.name ?? "unknown")),
  );
};
