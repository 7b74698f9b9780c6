/** Routes: /v1/hosts — list, show, cordon, uncordon. */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { getHost, listHosts, publicHost } from "../../cluster/store/hosts.js";
import { IdOrNameParams } from "../types/common.js";
import { Host, HostCordonPost, HostList } from "../types/hosts.js";
import type { RouteDeps } from "./deps.js";

/** Host routes. */
export const hostRoutes: FastifyPluginAsyncTypebox<RouteDeps> = async (app, { store, hosts, guard }) => {
  app.get(
    "/v1/hosts",
    { schema: { tags: ["hosts"], response: { 200: HostList } }, preHandler: guard("hosts:read") },
    async () => ({
      hosts: (await listHosts(store.read)).map(publicHost),
    }),
  );

  app.get(
    "/v1/hosts/:id",
    {
      schema: { tags: ["hosts"], params: IdOrNameParams, response: { 200: Host } },
      preHandler: guard("hosts:read"),
    },
    async (req) => publicHost(await getHost(store.read, req.params.id)),
  );

  app.post(
    "/v1/hosts/:id/cordon",
    {
      schema: { tags: ["hosts"], params: IdOrNameParams, body: HostCordonPost, response: { 200: Host } },
      preHandler: guard("hosts:write"),
    },
    async (req) => publicHost(await hosts.cordon(req.params.id, req.body.cordoned ?? true)),
  );

  app.post(
    "/v1/hosts/:id/uncordon",
    {
      schema: { tags: ["hosts"], params: IdOrNameParams, response: { 200: Host } },
      preHandler: guard("hosts:write"),
    },
    async (req) => publicHost(await hosts.cordon(req.params.id, false)),
  );
};
