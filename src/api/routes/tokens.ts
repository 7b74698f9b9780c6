/**
 * Routes: /v1/tokens — admin tokens for more people and tools: create (optionally with
 * grants such as executions:approve-own), list, revoke. Approvals need them: the token
 * that submitted an execution may not approve it, so a second approver needs a token.
 * Revoking a token ends its open event streams at once.
 */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "@sinclair/typebox";
import { countTokens, createToken, listTokens, revokeToken } from "../../cluster/store/tokens.js";
import { NovaError } from "../../lib/errors.js";
import { TokenCreated, TokenList, TokensPost } from "../types/tokens.js";
import type { RouteDeps } from "./deps.js";

/** Token routes. */
export const tokenRoutes: FastifyPluginAsyncTypebox<RouteDeps> = async (app, { store, guard, streams }) => {
  app.post(
    "/v1/tokens",
    {
      schema: { tags: ["tokens"], body: TokensPost, response: { 201: TokenCreated } },
      onRequest: guard("tokens:write"),
    },
    async (req, reply) => {
      const { token, record } = await createToken(store.db, req.body.name, "admin", req.body.grants ?? []);
      return reply.status(201).send({ token, ...record });
    },
  );

  app.get(
    "/v1/tokens",
    { schema: { tags: ["tokens"], response: { 200: TokenList } }, onRequest: guard("tokens:read") },
    async () => ({ tokens: await listTokens(store.read) }),
  );

  app.delete(
    "/v1/tokens/:id",
    {
      schema: { tags: ["tokens"], params: Type.Object({ id: Type.String({ format: "uuid" }) }) },
      onRequest: guard("tokens:write"),
    },
    async (req, reply) => {
      await store.write(async (tx) => {
        // Serialise revocations so two concurrent ones cannot both pass the last-admin check.
        await tx.query("LOCK TABLE api_tokens IN SHARE ROW EXCLUSIVE MODE");
        const target = (await listTokens(tx)).find((t) => t.id === req.params.id && t.revokedAt === null);
        if (!target)
          throw new NovaError("NOVA_NOT_FOUND", `Token ${req.params.id} not found (or already revoked).`, {
            details: { token: req.params.id },
          });
        if (target.kind === "admin" && (await countTokens(tx, "admin")) <= 1) {
          throw new NovaError(
            "NOVA_ILLEGAL_STATE",
            "This is the last admin token: revoking it would lock everybody out. Create another first: novacron token create NAME",
            { details: { token: target.id } },
          );
        }
        await revokeToken(tx, target.id);
      });
      // Committed: the token's open event streams end now, not at their next heartbeat.
      streams.revoke(req.params.id);
      return reply.status(204).send();
    },
  );
};
