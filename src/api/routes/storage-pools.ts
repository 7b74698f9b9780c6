/** Routes: /v1/storage-pools — add, list, show, remove the shared directories HA VMs keep their disks in. */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { StoragePoolService } from "../../cluster/storage-pool-service.js";
import { publicPool } from "../../cluster/store/storage-pools.js";
import { IdOrNameParams } from "../types/common.js";
import {
  StoragePool,
  StoragePoolCreated,
  StoragePoolList,
  StoragePoolsPost,
} from "../types/storage-pools.js";
import type { RouteDeps } from "./deps.js";

/** Storage pool routes (hosts' permissions: a pool is part of the hosts' set-up). */
export const storagePoolRoutes: FastifyPluginAsyncTypebox<RouteDeps> = async (app, { store, guard }) => {
  const pools = new StoragePoolService(store);

  app.get(
    "/v1/storage-pools",
    { schema: { tags: ["storage"], response: { 200: StoragePoolList } }, onRequest: guard("hosts:read") },
    async () => ({ storagePools: (await pools.list()).map(publicPool) }),
  );

  app.post(
    "/v1/storage-pools",
    {
      schema: { tags: ["storage"], body: StoragePoolsPost, response: { 201: StoragePoolCreated } },
      onRequest: guard("hosts:write"),
    },
    async (req, reply) => {
      const { pool, marker } = await pools.add(req.body);
      return reply.status(201).send({ storagePool: publicPool(pool), marker });
    },
  );

  app.get(
    "/v1/storage-pools/:id",
    {
      schema: { tags: ["storage"], params: IdOrNameParams, response: { 200: StoragePool } },
      onRequest: guard("hosts:read"),
    },
    async (req) => publicPool(await pools.get(req.params.id)),
  );

  app.delete(
    "/v1/storage-pools/:id",
    {
      schema: { tags: ["storage"], params: IdOrNameParams, response: { 200: StoragePool } },
      onRequest: guard("hosts:write"),
    },
    async (req) => publicPool(await pools.remove(req.params.id)),
  );
};
