/**
 * Routes: placement (docs/placement.md) — a host's labels, site and weight
 * (/v1/hosts/{id}/labels, /site, /weight), placement groups as resources
 * (/v1/placement-groups), and where an existing VM could move (/v1/vms/{id}/placement).
 */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { getPlacementGroup, listPlacementGroups, publicGroup } from "../../cluster/store/placement-groups.js";
import { IdOrNameParams } from "../types/common.js";
import { Host } from "../types/hosts.js";
import {
  HostLabelsPost,
  HostSitePut,
  HostWeightPut,
  PlacementExplanation,
  PlacementGroup,
  PlacementGroupList,
  PlacementGroupMemberParams,
  PlacementGroupMembersPost,
  PlacementGroupsPost,
} from "../types/placement.js";
import type { RouteDeps } from "./deps.js";

/** Placement routes. */
export const placementRoutes: FastifyPluginAsyncTypebox<RouteDeps> = async (
  app,
  { store, placement, vms, guard },
) => {
  app.post(
    "/v1/hosts/:id/labels",
    {
      schema: { tags: ["placement"], params: IdOrNameParams, body: HostLabelsPost, response: { 200: Host } },
      onRequest: guard("hosts:write"),
    },
    async (req) => placement.label(req.params.id, req.body.set ?? {}, req.body.remove ?? []),
  );

  app.put(
    "/v1/hosts/:id/site",
    {
      schema: { tags: ["placement"], params: IdOrNameParams, body: HostSitePut, response: { 200: Host } },
      onRequest: guard("hosts:write"),
    },
    async (req) => placement.setSite(req.params.id, req.body.site),
  );

  app.put(
    "/v1/hosts/:id/weight",
    {
      schema: { tags: ["placement"], params: IdOrNameParams, body: HostWeightPut, response: { 200: Host } },
      onRequest: guard("hosts:write"),
    },
    async (req) => placement.setWeight(req.params.id, req.body.weight),
  );

  app.get(
    "/v1/placement-groups",
    {
      schema: { tags: ["placement"], response: { 200: PlacementGroupList } },
      onRequest: guard("placement:read"),
    },
    async () => ({ groups: (await listPlacementGroups(store.read)).map(publicGroup) }),
  );

  app.post(
    "/v1/placement-groups",
    {
      schema: { tags: ["placement"], body: PlacementGroupsPost, response: { 201: PlacementGroup } },
      onRequest: guard("placement:write"),
    },
    async (req, reply) => reply.status(201).send(publicGroup(await placement.create(req.body))),
  );

  app.get(
    "/v1/placement-groups/:id",
    {
      schema: { tags: ["placement"], params: IdOrNameParams, response: { 200: PlacementGroup } },
      onRequest: guard("placement:read"),
    },
    async (req) => publicGroup(await getPlacementGroup(store.read, req.params.id)),
  );

  app.delete(
    "/v1/placement-groups/:id",
    {
      schema: { tags: ["placement"], params: IdOrNameParams, response: { 200: PlacementGroup } },
      onRequest: guard("placement:write"),
    },
    async (req) => publicGroup(await placement.delete(req.params.id)),
  );

  app.post(
    "/v1/placement-groups/:id/members",
    {
      schema: {
        tags: ["placement"],
        params: IdOrNameParams,
        body: PlacementGroupMembersPost,
        response: { 200: PlacementGroup },
      },
      onRequest: guard("placement:write"),
    },
    async (req) => publicGroup(await placement.addMembers(req.params.id, req.body.vms)),
  );

  app.delete(
    "/v1/placement-groups/:id/members/:vm",
    {
      schema: { tags: ["placement"], params: PlacementGroupMemberParams, response: { 200: PlacementGroup } },
      onRequest: guard("placement:write"),
    },
    async (req) => publicGroup(await placement.removeMember(req.params.id, req.params.vm)),
  );

  app.get(
    "/v1/vms/:id/placement",
    {
      schema: { tags: ["placement"], params: IdOrNameParams, response: { 200: PlacementExplanation } },
      onRequest: guard("vms:read"),
    },
    async (req) => vms.explainMove(req.params.id),
  );
};
