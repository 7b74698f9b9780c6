/**
 * The agent's migration routes (docs/agent-protocol.md): thin adapters that validate the
 * request and hand it to MigrationService (migration-service.ts), which holds the logic.
 */
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import {
  AgentCopyState,
  type AgentIncomingEndpoints,
  AgentIncomingFinishPost,
  AgentIncomingPost,
  AgentOutgoingCancelPost,
  AgentOutgoingPost,
} from "../api/types/agent.js";
import type { MigrationService } from "./migration-service.js";

const VmParams = Type.Object({ id: Type.String({ pattern: "^[0-9a-f-]{36}$" }) });
const MigrationQuery = Type.Object({ migrationId: Type.String({ minLength: 1 }) });

/** Registers the migration routes on the agent API; `migrations` holds their state. */
export function registerMigrationRoutes(app: FastifyInstance, migrations: MigrationService): void {
  // Destination: start a paused QEMU waiting for the VM, export its disk, listen.
  app.post<{ Params: { id: string }; Body: AgentIncomingPost }>(
    "/agent/v1/vms/:id/incoming",
    { schema: { params: VmParams, body: AgentIncomingPost } },
    async (req): Promise<AgentIncomingEndpoints> => migrations.prepareIncoming(req.params.id, req.body),
  );

  // Destination: the source completed; stop exporting the disk and run the VM here.
  app.post<{ Params: { id: string }; Body: AgentIncomingFinishPost }>(
    "/agent/v1/vms/:id/incoming/finish",
    { schema: { params: VmParams, body: AgentIncomingFinishPost } },
    async (req) => migrations.finishIncoming(req.params.id, req.body),
  );

  // Source: start a step (see AgentOutgoingPost).
  app.post<{ Params: { id: string }; Body: AgentOutgoingPost }>(
    "/agent/v1/vms/:id/outgoing",
    { schema: { params: VmParams, body: AgentOutgoingPost } },
    async (req) => migrations.outgoingStep(req.params.id, req.body, req.log),
  );

  app.get<{ Params: { id: string }; Querystring: { migrationId: string } }>(
    "/agent/v1/vms/:id/outgoing",
    { schema: { params: VmParams, querystring: MigrationQuery } },
    async (req) => migrations.outgoingStatus(req.params.id, req.query.migrationId),
  );

  // Source: abandon the migration; the VM keeps (or resumes) running here.
  app.post<{ Params: { id: string }; Body: AgentOutgoingCancelPost }>(
    "/agent/v1/vms/:id/outgoing/cancel",
    { schema: { params: VmParams, body: AgentOutgoingCancelPost } },
    async (req) =>
      migrations.cancelOutgoing(
        req.params.id,
        req.body.migrationId,
        req.body.targetGone === true,
        req.body.fence,
      ),
  );

  // Either side: what this host holds of the VM (ACP's planner asks); 200 even when gone.
  app.get<{ Params: { id: string } }>(
    "/agent/v1/vms/:id/copy",
    { schema: { params: VmParams, response: { 200: AgentCopyState } } },
    async (req) => migrations.copyState(req.params.id),
  );

  // Source: the VM runs on the target now; remove this copy.
  app.post<{ Params: { id: string } }>(
    "/agent/v1/vms/:id/outgoing/release",
    { schema: { params: VmParams } },
    async (req) => ({ released: await migrations.releaseOutgoing(req.params.id) }),
  );
}
