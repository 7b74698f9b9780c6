/** Routes: /v1/images — list, show, import. */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { getImage, listImages, publicImage } from "../../cluster/store/images.js";
import { IdOrNameParams } from "../types/common.js";
import { Image, ImageList, ImagesPost } from "../types/images.js";
import type { RouteDeps } from "./deps.js";

/** Image routes. */
export const imageRoutes: FastifyPluginAsyncTypebox<RouteDeps> = async (app, { store, images, guard }) => {
  app.get(
    "/v1/images",
    { schema: { tags: ["images"], response: { 200: ImageList } }, onRequest: guard("images:read") },
    async () => ({
      images: (await listImages(store.read)).map(publicImage),
    }),
  );

  app.get(
    "/v1/images/:id",
    {
      schema: { tags: ["images"], params: IdOrNameParams, response: { 200: Image } },
      onRequest: guard("images:read"),
    },
    async (req) => publicImage(await getImage(store.read, req.params.id)),
  );

  app.post(
    "/v1/images",
    {
      schema: { tags: ["images"], body: ImagesPost, response: { 201: Image } },
      onRequest: guard("images:write"),
    },
    async (req, reply) => {
      const image = await images.import(req.body);
      return reply.status(201).send(publicImage(image));
    },
  );
};
