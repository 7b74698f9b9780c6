/** Routes: /v1/vms — create, list, show, change (HA), start, stop, restart, delete, console. */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { getHost } from "../../cluster/store/hosts.js";
import { getVm, listVms, publicVm } from "../../cluster/store/vms.js";
import { NovaError } from "../../lib/errors.js";
import { IdOrNameParams } from "../types/common.js";
import { VmDryRun } from "../types/placement.js";
import { Vm, VmConsole, VmConsoleQuery, VmList, VmPatch, VmsPost, VmsPostQuery } from "../types/vms.js";
import type { RouteDeps } from "./deps.js";

/** VM routes. */
export const vmRoutes: FastifyPluginAsyncTypebox<RouteDeps> = async (app, { store, vms, agents, guard }) => {
  app.get(
    "/v1/vms",
    { schema: { tags: ["vms"], response: { 200: VmList } }, onRequest: guard("vms:read") },
    async () => ({
      vms: (await listVms(store.read)).map(publicVm),
    }),
  );

  app.post(
    "/v1/vms",
    {
      schema: {
        tags: ["vms"],
        body: VmsPost,
        querystring: VmsPostQuery,
        response: { 201: Vm, 200: VmDryRun },
      },
      onRequest: guard("vms:write"),
    },
    async (req, reply) =>
      req.query.dryRun
        ? reply.status(200).send(await vms.dryRun(req.body))
        : reply.status(201).send(publicVm(await vms.create(req.body))),
  );

  app.get(
    "/v1/vms/:id",
    {
      schema: { tags: ["vms"], params: IdOrNameParams, response: { 200: Vm } },
      onRequest: guard("vms:read"),
    },
    async (req) => publicVm(await getVm(store.read, req.params.id)),
  );

  app.patch(
    "/v1/vms/:id",
    {
      schema: { tags: ["vms"], params: IdOrNameParams, body: VmPatch, response: { 200: Vm } },
      onRequest: guard("vms:write"),
    },
    async (req) => {
      const vm =
        req.body.ha === undefined
          ? await getVm(store.read, req.params.id)
          : await vms.setHa(req.params.id, req.body.ha);
      return publicVm(vm);
    },
  );

  for (const action of ["start", "stop", "restart"] as const) {
    app.post(
      `/v1/vms/:id/${action}`,
      {
        schema: { tags: ["vms"], params: IdOrNameParams, response: { 202: Vm } },
        onRequest: guard("vms:write"),
      },
      async (req, reply) => reply.status(202).send(publicVm(await vms[action](req.params.id))),
    );
  }

  app.delete(
    "/v1/vms/:id",
    {
      schema: { tags: ["vms"], params: IdOrNameParams, response: { 202: Vm } },
      onRequest: guard("vms:write"),
    },
    async (req, reply) => reply.status(202).send(publicVm(await vms.delete(req.params.id))),
  );

  app.get(
    "/v1/vms/:id/console",
    {
      schema: {
        tags: ["vms"],
        params: IdOrNameParams,
        querystring: VmConsoleQuery,
        response: { 200: VmConsole },
      },
      onRequest: guard("vms:read"),
    },
    async (req) => {
      const vm = await getVm(store.read, req.params.id);
      if (!vm.hostId)
        throw new NovaError("NOVA_ILLEGAL_STATE", `VM ${vm.name} has no host yet, so it has no console.`);
      const host = await getHost(store.read, vm.hostId);
      const { lines } = await agents.client(host).consoleTail(vm.id, req.query.lines ?? 50);
      return { vm: vm.name, host: host.name, lines };
    },
  );
};
