/**
 * Routes: POST /v1/vms/{id}/migrations, GET /v1/migrations[/{id}], GET
 * /v1/migrations/{id}/samples (its progress history), DELETE /v1/migrations/{id} (cancel).
 */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { listSamples } from "../../cluster/store/migration-samples.js";
import { getMigration, listMigrations, publicMigration } from "../../cluster/store/migrations.js";
import { getVm } from "../../cluster/store/vms.js";
import { IdOrNameParams } from "../types/common.js";
import { Migration, MigrationList, MigrationSampleList, MigrationsPost } from "../types/migrations.js";
import type { RouteDeps } from "./deps.js";

/** Migration routes. */
export const migrationRoutes: FastifyPluginAsyncTypebox<RouteDeps> = async (
  app,
  { store, migrations, guard },
) => {
  app.post(
    "/v1/vms/:id/migrations",
    {
      schema: {
        tags: ["migrations"],
        params: IdOrNameParams,
        body: MigrationsPost,
        response: { 202: Migration },
      },
      onRequest: guard("vms:write"),
    },
    async (req, reply) =>
      reply.status(202).send(publicMigration(await migrations.create(req.params.id, req.body ?? {}))),
  );

  app.get(
    "/v1/migrations",
    { schema: { tags: ["migrations"], response: { 200: MigrationList } }, onRequest: guard("vms:read") },
    async () => ({ migrations: (await listMigrations(store.read)).map(publicMigration) }),
  );

  app.get(
    "/v1/vms/:id/migrations",
    {
      schema: { tags: ["migrations"], params: IdOrNameParams, response: { 200: MigrationList } },
      onRequest: guard("vms:read"),
    },
    async (req) => {
      const vm = await getVm(store.read, req.params.id);
      return { migrations: (await listMigrations(store.read, { vmId: vm.id })).map(publicMigration) };
    },
  );

  app.get(
    "/v1/migrations/:id",
    {
      schema: { tags: ["migrations"], params: IdOrNameParams, response: { 200: Migration } },
      onRequest: guard("vms:read"),
    },
    async (req) => publicMigration(await getMigration(store.read, req.params.id)),
  );

  app.get(
    "/v1/migrations/:id/samples",
    {
      schema: { tags: ["migrations"], params: IdOrNameParams, response: { 200: MigrationSampleList } },
      onRequest: guard("vms:read"),
    },
    async (req) => listSamples(store.read, req.params.id),
  );

  app.delete(
    "/v1/migrations/:id",
    {
      schema: { tags: ["migrations"], params: IdOrNameParams, response: { 202: Migration } },
      onRequest: guard("vms:write"),
    },
    async (req, reply) => reply.status(202).send(publicMigration(await migrations.cancel(req.params.id))),
  );
};
