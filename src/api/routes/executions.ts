/**
 * Routes: /v1/executions (submit, list, show, logs, cancel, approve, reject, retry) and
 * /v1/secrets (set, list names, delete). Submitting with `wait` (or a plan in immediate
 * mode) replies when the execution ends or waits for approval.
 */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "@sinclair/typebox";
import { getExecution, listExecutions, listLogs, publicExecution } from "../../cluster/store/executions.js";
import { deleteSecret, listSecrets, putSecret } from "../../exec/secrets.js";
import type { ExecSystem } from "../../exec/system.js";
import { NovaError } from "../../lib/errors.js";
import type { Principal } from "../auth.js";
import { IdOrNameParams } from "../types/common.js";
import {
  Execution,
  ExecutionDecision,
  ExecutionList,
  ExecutionLogs,
  ExecutionsPost,
  SecretList,
  SecretPost,
} from "../types/executions.js";
import type { RouteDeps } from "./deps.js";

/** Route deps plus the execution system. */
export interface ExecRouteDeps extends RouteDeps {
  exec: ExecSystem;
}

// Immediate mode holds the request open at most this long, then replies with the state.
const IMMEDIATE_WAIT_MS = 10 * 60_000;

function principalOf(req: { principal?: Principal }): Principal {
  if (!req.principal) throw new NovaError("NOVA_UNAUTHENTICATED", "No principal on an authenticated route");
  return req.principal;
}

/** Execution and secret routes. */
export const executionRoutes: FastifyPluginAsyncTypebox<ExecRouteDeps> = async (
  app,
  { store, exec, guard },
) => {
  const svc = exec.service;

  app.post(
    "/v1/executions",
    {
      schema: {
        tags: ["executions"],
        body: ExecutionsPost,
        response: { 200: Execution, 201: Execution, 202: Execution },
      },
      onRequest: guard("executions:write"),
    },
    async (req, reply) => {
      const headerKey = req.headers["idempotency-key"];
      const body =
        typeof headerKey === "string" && !req.body.idempotencyKey
          ? { ...req.body, idempotencyKey: headerKey }
          : req.body;
      const { execution, duplicate } = await svc.submit(principalOf(req), body);
      if (duplicate) return reply.status(200).send({ ...publicExecution(execution), duplicate: true });
      if (execution.mode === "immediate") {
        const done = await svc.waitSettled(execution.id, IMMEDIATE_WAIT_MS);
        return reply.status(200).send(publicExecution(done));
      }
      return reply.status(202).send(publicExecution(execution));
    },
  );

  app.get(
    "/v1/executions",
    {
      schema: {
        tags: ["executions"],
        querystring: Type.Object({
          state: Type.Optional(Type.String()),
          limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
        }),
        response: { 200: ExecutionList },
      },
      onRequest: guard("executions:read"),
    },
    async (req) => ({
      executions: (
        await listExecutions(store.read, {
          ...(req.query.state ? { state: req.query.state } : {}),
          limit: req.query.limit ?? 100,
        })
      ).map(publicExecution),
    }),
  );

  app.get(
    "/v1/executions/:id",
    {
      schema: { tags: ["executions"], params: IdOrNameParams, response: { 200: Execution } },
      onRequest: guard("executions:read"),
    },
    async (req) => publicExecution(await getExecution(store.read, req.params.id)),
  );

  app.get(
    "/v1/executions/:id/logs",
    {
      schema: {
        tags: ["executions"],
        params: IdOrNameParams,
        querystring: Type.Object({
          after: Type.Optional(Type.Integer({ minimum: 0, default: 0 })),
          limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 5000, default: 1000 })),
        }),
        response: { 200: ExecutionLogs },
      },
      onRequest: guard("executions:read"),
    },
    async (req) => {
      const e = await getExecution(store.read, req.params.id);
      const after = req.query.after ?? 0;
      const lines = await listLogs(store.read, e.id, after, req.query.limit ?? 1000);
      return { lines, state: e.state, next: lines.length > 0 ? lines[lines.length - 1]!.id : after };
    },
  );

  const decision = (action: "cancel" | "approve" | "reject" | "retry") => ({
    schema: {
      tags: ["executions"],
      params: IdOrNameParams,
      body: Type.Optional(ExecutionDecision),
      response: { 200: Execution },
    },
    // The body is optional (docs/api.md): a POST without one validates as `{}`.
    preValidation: async (req: { body: unknown }) => {
      req.body ??= {};
    },
    onRequest: guard(action === "approve" || action === "reject" ? "executions:approve" : "executions:write"),
  });
  app.post("/v1/executions/:id/cancel", decision("cancel"), async (req) =>
    publicExecution(await svc.cancel(req.params.id)),
  );
  app.post("/v1/executions/:id/approve", decision("approve"), async (req) =>
    publicExecution(await svc.approve(req.params.id, principalOf(req), req.body?.reason ?? "")),
  );
  app.post("/v1/executions/:id/reject", decision("reject"), async (req) =>
    publicExecution(await svc.reject(req.params.id, principalOf(req), req.body?.reason ?? "")),
  );
  app.post("/v1/executions/:id/retry", decision("retry"), async (req) =>
    publicExecution(await svc.retry(req.params.id)),
  );

  const SecretParams = Type.Object({ name: Type.String({ pattern: "^[a-z0-9][a-z0-9._-]{0,62}$" }) });
  app.post(
    "/v1/secrets",
    { schema: { tags: ["secrets"], body: SecretPost }, onRequest: guard("secrets:write") },
    async (req, reply) => {
      await putSecret(store.db, exec.secretKey, req.body.name, req.body.value);
      return reply.status(204).send();
    },
  );
  app.get(
    "/v1/secrets",
    { schema: { tags: ["secrets"], response: { 200: SecretList } }, onRequest: guard("secrets:read") },
    async () => ({ secrets: await listSecrets(store.read) }),
  );
  app.delete(
    "/v1/secrets/:name",
    { schema: { tags: ["secrets"], params: SecretParams }, onRequest: guard("secrets:write") },
    async (req, reply) => {
      if (!(await deleteSecret(store.db, req.params.name)))
        throw new NovaError("NOVA_NOT_FOUND", `Secret ${req.params.name} not found.`);
      return reply.status(204).send();
    },
  );
};
