/**
 * The agent's HTTPS API (`/agent/v1/...`, docs/agent-protocol.md): put a VM in a power
 * state, delete it, read its console, import an image file into the host's image store,
 * run allowlisted commands, migrate; and `/metrics`. Mutual TLS: the handshake needs a
 * certificate from the cluster CA, and every route but blob downloads and `/metrics` needs
 * the server's; a blob download (by another host) needs a host certificate and a one-time
 * ticket; `/metrics` takes the server's or a metrics scraper's certificate, and a
 * scraper's certificate opens nothing else.
 * Bounded like the server's API (lib/http-limits.ts): a slow or silent client is cut
 * off within seconds.
 */

import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import path from "node:path";
import { TLSSocket } from "node:tls";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import { Type } from "@sinclair/typebox";
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from "fastify";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import {
  AgentBlob,
  AgentImageImportPost,
  AgentImagePullPost,
  AgentVmFencePut,
  AgentVmFenceReply,
  AgentVmPut,
  ObservedVm,
} from "../api/types/agent.js";
import { AgentCommandPost, AgentCommandResult } from "../api/types/executions.js";
import type { ImageStore } from "../compute/images/image-store.js";
import { NovaError } from "../lib/errors.js";
import { failpoint } from "../lib/failpoints.js";
import { installErrorHandlers } from "../lib/http-errors.js";
import { applyHttpServerLimits, TLS_HANDSHAKE_TIMEOUT_MS } from "../lib/http-limits.js";
import { installRequestTracing } from "../lib/http-tracing.js";
import { identityOf, normaliseSerial, urisOf } from "../security/pki.js";
import type { ClusterFetch } from "../security/tls-client.js";
import { pullBlob } from "./blob-pull.js";
import type { BlobTickets } from "./blob-tickets.js";
import type { AgentDwcp } from "./dwcp-transport.js";
import type { FenceStore } from "./fence-store.js";
import { runAllowedCommand } from "./host-commands.js";
import { registerImageCopyRoutes } from "./image-copy-api.js";
import { registerMigrationRoutes } from "./migration-api.js";
import { MigrationService } from "./migration-service.js";
import type { VmManager } from "./vm-manager.js";

const VmParams = Type.Object({ id: Type.String({ pattern: "^[0-9a-f-]{36}$" }) });
const DigestParams = Type.Object({ digest: Type.String({ pattern: "^sha256:[0-9a-f]{64}$" }) });

/** What the agent API needs. */
export interface AgentApiDeps {
  vms: VmManager;
  /** The fencing tokens held for this host's VMs. */
  fences: FenceStore;
  images: ImageStore;
  /** TLS material: HTTPS with client certificates from the cluster CA, always. */
  tls: AgentApiTls;
  /** Fetch for calls to other hosts (blob downloads), over their mutual TLS. */
  fetchHost: ClusterFetch;
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
  /** Scraper certificates revoked by the server (told in heartbeat replies); absent: none refused. */
  revokedScrapers?: { has(serial: string): boolean };
  /** How QEMU's own transports are secured (MigrationServiceDeps). */
  qemuTls?: { dir: string } | null;
  /** The explicit plaintext opt-in for QEMU's transports (MigrationServiceDeps). */
  qemuPlaintext?: boolean;
  /** The DWCP migration transport, when this agent offers it. */
  dwcp?: AgentDwcp | null;
  logger: Logger;
  /** The host command allowlist. @defaultValue `<data dir>/host-commands.json` (next to tmpDir) */
  commandAllowlistFile?: string;
  /** The agent's metrics (agent-metrics.ts), served on /metrics; absent: no /metrics route. */
  metrics?: Registry;
}

/** The agent API's TLS material. */
export interface AgentApiTls {
  caPem: string;
  certPem: string;
  keyPem: string;
}

/** The TLS server options: TLS 1.3, a client certificate from the cluster CA required. */
export function agentTlsOptions(tls: AgentApiTls) {
  return {
    ca: tls.caPem,
    cert: tls.certPem,
    key: tls.keyPem,
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: "TLSv1.3" as const,
    handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS,
  };
}

/** Who the verified client certificate on the request's connection names (undefined: none, or plain http). */
function callerOf(req: { raw: { socket: unknown } }) {
  const socket = req.raw.socket;
  if (!(socket instanceof TLSSocket) || !socket.authorized) return undefined;
  const cert = socket.getPeerCertificate();
  return { ...identityOf(urisOf(cert.subjectaltname)), serial: normaliseSerial(cert.serialNumber ?? "") };
}

/** Builds the agent's API server. */
export function buildAgentApi(deps: AgentApiDeps): FastifyInstance {
  const app = Fastify({
    https: agentTlsOptions(deps.tls),
    loggerInstance: deps.logger as unknown as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
  }).withTypeProvider<TypeBoxTypeProvider>();
  // Header, request and keep-alive timeouts and a connection cap, as on the server's API.
  applyHttpServerLimits(app.server);
  installErrorHandlers(app);
  // Only the server's calls within a trace of its own are traced here.
  installRequestTracing(app, () => false);

  app.addHook("onRequest", async (req) => {
    const caller = callerOf(req);
    if (!caller || caller.role === "unknown")
      throw new NovaError("NOVA_UNAUTHENTICATED", "A NovaCron cluster certificate is required.");
    if (caller.role === "scraper" && deps.revokedScrapers?.has(caller.serial))
      throw new NovaError(
        "NOVA_UNAUTHENTICATED",
        `This metrics scraper's certificate (serial ${caller.serial}) was revoked; make new credentials with novacron metrics credentials.`,
      );
    // Prometheus with a scraper certificate (novacron metrics credentials) reads /metrics only.
    if (req.routeOptions.url === "/metrics" && (caller.role === "scraper" || caller.role === "server"))
      return;
    if (caller.role === "scraper")
      throw new NovaError("NOVA_FORBIDDEN", "A metrics scraper's certificate may read /metrics only.");
    if (req.url === "/healthz") return;
    // Another host may download a blob (with a one-time ticket the server got for it).
    if (req.routeOptions.url === "/agent/v1/images/:digest/blob") return;
    if (caller.role !== "server")
      throw new NovaError("NOVA_FORBIDDEN", "Only the NovaCron server may call this agent's API.");
  });

  app.get("/healthz", async () => ({ status: "ok" }));

  const registry = deps.metrics;
  if (registry) {
    app.get("/metrics", async (_req, reply) => {
      reply.header("content-type", registry.contentType);
      return registry.metrics();
    });
  }

  app.get("/agent/v1/vms", async () => ({ vms: deps.vms.list() }));

  app.put(
    "/agent/v1/vms/:id",
    { schema: { params: VmParams, body: AgentVmPut, response: { 200: ObservedVm } } },
    async (req) => deps.vms.put(req.params.id, req.body),
  );

  // A newer token for a VM, held or not (a released VM's directory is gone), without
  // touching its power state: the hand-off fences the paused source copy with it.
  app.put(
    "/agent/v1/vms/:id/fence",
    { schema: { params: VmParams, body: AgentVmFencePut, response: { 200: AgentVmFenceReply } } },
    async (req) => {
      failpoint("agent.fence");
      return { held: (await deps.fences.admit(req.params.id, req.body, "record")) ?? req.body };
    },
  );

  const migrations = new MigrationService({
    vms: deps.vms,
    fences: deps.fences,
    listenHost: deps.listenHost,
    hostName: deps.hostName,
    qemuTls: deps.qemuTls ?? null,
    qemuPlaintext: deps.qemuPlaintext ?? false,
    dwcp: deps.dwcp ?? null,
    log: app.log,
  });

  // Through the migration service: a destination's copy ends the migration it waited for.
  app.delete("/agent/v1/vms/:id", { schema: { params: VmParams } }, async (req) => ({
    deleted: await migrations.deleteVm(req.params.id),
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
    // The size lets the puller refuse a longer download (blob-pull.ts).
    const { size } = await stat(deps.images.pathOf(req.params.digest));
    return { ticket: deps.tickets.issue(req.params.digest), sizeBytes: size };
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
      const blob = await pullBlob(deps.images, deps.tmpDir, req.body, deps.fetchHost);
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

  registerMigrationRoutes(app, migrations);
  registerImageCopyRoutes(app, deps.dwcp);
  return app;
}
