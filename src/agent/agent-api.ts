/**
 * The agent's HTTP API, called by the server with the host credential (`/agent/v1/...`,
 * docs/agent-protocol.md): put a VM in a power state, delete it, read its console,
 * import an image file into the host's image store.
 */
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import path from "node:path";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import { Type } from "@sinclair/typebox";
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from "fastify";
import type { Logger } from "pino";
import {
  AgentBlob,
  AgentImageImportPost,
  AgentImagePullPost,
  AgentVmPut,
  ObservedVm,
} from "../api/types/agent.js";
import { AgentCommandPost, AgentCommandResult } from "../api/types/executions.js";
import type { ImageStore } from "../compute/images/image-store.js";
import { bearerToken, secretsEqual } from "../lib/bearer.js";
import { NovaError } from "../lib/errors.js";
import { installErrorHandlers } from "../lib/http-errors.js";
import { pullBlob } from "./blob-pull.js";
import type { BlobTickets } from "./blob-tickets.js";
import type { AgentDwcp } from "./dwcp-transport.js";
import { runAllowedCommand } from "./host-commands.js";
import { registerMigrationRoutes } from "./migration-api.js";
import { MigrationService } from "./migration-service.js";
import type { VmManager } from "./vm-manager.js";

const VmParams = Type.Object({ id: Type.String({ pattern: "^[0-9a-f-]{36}$" }) });
const DigestParams = Type.Object({ digest: Type.String({ pattern: "^sha256:[0-9a-f]{64}$" }) });

/** What the agent API needs. */
export interface AgentApiDeps {
  vms: VmManager;
  images: ImageStore;
  /** The current host credential, undefined until registered. */
  credential: () => string | undefined;
  /** Called after an import so the next heartbeat reports the new blob at once. */
  onImagesChanged: () => void;
  /** One-time download tickets for this host's blobs. */
  tickets: BlobTickets;
  /** Where downloads land before import. */
  tmpDir: string;
  /** The address migration and NBD listeners bind to (the agent's own). */
  listenHost: string;
  /** This host's name in the cluster (what its certificate names). */
  hostName: string;
  /** How QEMU's own transports are secured (MigrationServiceDeps). */
  qemuTls?: { dir: string } | null;
  /** The explicit plaintext opt-in for QEMU's transports (MigrationServiceDeps). */
  qemuPlaintext?: boolean;
  /** The DWCP migration transport, when this agent offers it. */
  dwcp?: AgentDwcp | null;
  logger: Logger;
  /** The host command allowlist. @defaultValue `<data dir>/host-commands.json` (next to tmpDir) */
  commandAllowlistFile?: string;
}

/** Builds the agent's API server. */
export function buildAgentApi(deps: AgentApiDeps): FastifyInstance {
  const app = Fastify({
    loggerInstance: deps.logger as unknown as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
  }).withTypeProvider<TypeBoxTypeProvider>();
  installErrorHandlers(app);

  app.addHook("preHandler", async (req) => {
    // Blob downloads carry a one-time ticket instead of the host credential.
    if (req.url === "/healthz" || req.routeOptions.url === "/agent/v1/images/:digest/blob") return;
    const expected = deps.credential();
    if (!expected)
      throw new NovaError("NOVA_UNAUTHENTICATED", "This agent has not registered with a server yet.");
    if (!secretsEqual(bearerToken(req), expected))
      throw new NovaError("NOVA_UNAUTHENTICATED", "Wrong host credential.");
  });

  app.get("/healthz", async () => ({ status: "ok" }));

  app.get("/agent/v1/vms", async () => ({ vms: deps.vms.list() }));

  app.put(
    "/agent/v1/vms/:id",
    { schema: { params: VmParams, body: AgentVmPut, response: { 200: ObservedVm } } },
    async (req) => deps.vms.put(req.params.id, req.body),
  );

  app.delete("/agent/v1/vms/:id", { schema: { params: VmParams } }, async (req) => ({
    deleted: await deps.vms.delete(req.params.id),
  }));

  app.get(
    "/agent/v1/vms/:id/console",
    {
      schema: {
        params: VmParams,
        querystring: Type.Object({ lines: Type.Integer({ minimum: 1, maximum: 10_000, default: 50 }) }),
      },
    },
    async (req) => ({ lines: await deps.vms.consoleTail(req.params.id, req.query.lines) }),
  );

  app.post(
    "/agent/v1/images/import",
    { schema: { body: AgentImageImportPost, response: { 200: AgentBlob } } },
    async (req) => {
      const blob = await deps.images.importFile(req.body.path, req.body.kind);
      deps.onImagesChanged();
      return blob;
    },
  );

  app.post("/agent/v1/images/:digest/ticket", { schema: { params: DigestParams } }, async (req) => {
    if (!(await deps.images.has(req.params.digest))) {
      throw new NovaError("NOVA_NOT_FOUND", `This host's image store has no blob ${req.params.digest}`);
    }
    return { ticket: deps.tickets.issue(req.params.digest) };
  });

  app.get(
    "/agent/v1/images/:digest/blob",
    { schema: { params: DigestParams, querystring: Type.Object({ ticket: Type.String({ minLength: 1 }) }) } },
    async (req, reply) => {
      if (!deps.tickets.redeem(req.query.ticket, req.params.digest)) {
        throw new NovaError("NOVA_FORBIDDEN", "Invalid, used or expired download ticket.");
      }
      const file = deps.images.pathOf(req.params.digest);
      const { size } = await stat(file);
      reply.header("content-type", "application/octet-stream").header("content-length", size);
      return reply.send(createReadStream(file));
    },
  );

  app.post(
    "/agent/v1/images/pull",
    { schema: { body: AgentImagePullPost, response: { 200: AgentBlob } } },
    async (req) => {
      const blob = await pullBlob(deps.images, deps.tmpDir, req.body);
      deps.onImagesChanged();
      return blob;
    },
  );

  app.post(
    "/agent/v1/commands/run",
    { schema: { body: AgentCommandPost, response: { 200: AgentCommandResult } } },
    async (req, reply) => {
      // The server aborts the request on cancel: the connection closes before we reply,
      // and the command dies with it.
      const aborted = new AbortController();
      reply.raw.on("close", () => {
        if (!reply.raw.writableFinished) aborted.abort();
      });
      const file = deps.commandAllowlistFile ?? path.join(path.dirname(deps.tmpDir), "host-commands.json");
      return runAllowedCommand(file, req.body.command, req.body.args, aborted.signal);
    },
  );

  registerMigrationRoutes(
    app,
    new MigrationService({
      vms: deps.vms,
      listenHost: deps.listenHost,
      hostName: deps.hostName,
      qemuTls: deps.qemuTls ?? null,
      qemuPlaintext: deps.qemuPlaintext ?? false,
      dwcp: deps.dwcp ?? null,
    }),
  );
  return app;
}
