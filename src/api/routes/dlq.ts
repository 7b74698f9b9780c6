/** Routes: /v1/dlq — the dead-letter queue: list, and requeue an entry. */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "@sinclair/typebox";
import type { DeadLetter } from "../../exec/service.js";
import { DlqEntry, DlqList } from "../types/executions.js";
import type { ExecRouteDeps } from "./executions.js";

function toEntry(d: DeadLetter): DlqEntry {
  return {
    jobId: d.job.id,
    queue: d.job.queue,
    executionId: d.execution?.id ?? null,
    executionName: d.execution?.name ?? null,
    executionState: d.execution?.state ?? null,
    attempts: d.job.attempts,
    maxAttempts: d.job.maxAttempts,
    lastError: d.job.lastError,
    createdAt: d.job.createdAt,
    deadAt: d.job.finishedAt,
  };
}

/** DLQ routes. */
export const dlqRoutes: FastifyPluginAsyncTypebox<ExecRouteDeps> = async (app, { exec, guard }) => {
  app.get(
    "/v1/dlq",
    { schema: { tags: ["dlq"], response: { 200: DlqList } }, onRequest: guard("executions:read") },
    async () => ({ entries: (await exec.service.deadLetters()).map(toEntry) }),
  );
  app.post(
    "/v1/dlq/:jobId/requeue",
    {
      schema: {
        tags: ["dlq"],
        params: Type.Object({ jobId: Type.Integer({ minimum: 1 }) }),
        response: { 200: DlqEntry },
      },
      onRequest: guard("executions:write"),
    },
    async (req) => toEntry(await exec.service.requeue(req.params.jobId)),
  );
};
