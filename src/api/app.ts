/**
 * Builds the server's Fastify app: schemas as the one definition (validation, types,
 * OpenAPI at /v1/openapi.json), auth on every /v1 route and /metrics, one error shape,
 * /healthz, and the resource routes; bounded by limits.ts (HTTP timeouts, connection cap,
 * rate limits per address, per token and for failed authentications, event stream caps),
 * and the web console's files at `/` (routes/console.ts).
 */

import type { SecureContextOptions } from "node:tls";
import { AjvCompiler, type ValidatorFactory } from "@fastify/ajv-compiler";
import cookie from "@fastify/cookie";
import swagger from "@fastify/swagger";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from "fastify";
import type { Logger } from "pino";
import type { AgentConnector } from "../cluster/agent-client.js";
import type { HostService } from "../cluster/host-service.js";
import type { ImageService } from "../cluster/image-service.js";
import type { PlacementService } from "../cluster/placement-service.js";
import type { Store } from "../cluster/store/store.js";
import type { UserService } from "../cluster/user-service.js";
import type { VmService } from "../cluster/vm-service.js";
import type { ExecSystem } from "../exec/system.js";
import type { Federation } from "../federation/federation.js";
import { isNovaError, NovaError } from "../lib/errors.js";
import {
  BODY_LIMIT_BYTES,
  frameworkErrors,
  installErrorHandlers,
  MAX_PARAM_LENGTH,
  rejectNulBytes,
} from "../lib/http-errors.js";
import { applyHttpServerLimits, TLS_HANDSHAKE_TIMEOUT_MS } from "../lib/http-limits.js";
import { installRequestTracing } from "../lib/http-tracing.js";
import type { DrainService } from "../migration/drain-service.js";
import type { MigrationService } from "../migration/migration-service.js";
import type { Rebalancer } from "../migration/rebalancer.js";
import type { ServerMetrics } from "../observability/metrics.js";
import { VERSION } from "../version.js";
import { type Requirement, requirePermission } from "./auth.js";
import { installCompression } from "./compression.js";
import { defaultConsoleDir, loadConsoleAssets } from "./console-assets.js";
import { EventStreams } from "./event-streams.js";
import { type ApiLimits, RateBuckets, rateLimited, resolveApiLimits } from "./limits.js";
import { agentRoutes } from "./routes/agent.js";
import { type AlertReader, alertRoutes, defaultRunbooksDir, loadRunbooks } from "./routes/alerts.js";
import { consoleFallback } from "./routes/console.js";
import { type ControlPlaneRouteDeps, controlPlaneRoutes } from "./routes/control-plane.js";
import type { RouteDeps } from "./routes/deps.js";
import { dlqRoutes } from "./routes/dlq.js";
import { eventRoutes } from "./routes/events.js";
import { executionRoutes } from "./routes/executions.js";
import { federationRoutes } from "./routes/federation.js";
import { hostRoutes } from "./routes/hosts.js";
import { imageRoutes } from "./routes/images.js";
import { metricsRoutes } from "./routes/metrics.js";
import { migrationRoutes } from "./routes/migrations.js";
import { placementRoutes } from "./routes/placement.js";
import { rebalancerRoutes } from "./routes/rebalancer.js";
import { sessionRoutes } from "./routes/session.js";
import { storagePoolRoutes } from "./routes/storage-pools.js";
import { tokenRoutes } from "./routes/tokens.js";
import { userRoutes } from "./routes/users.js";
import { vmRoutes } from "./routes/vms.js";

/** What the app is built from. */
export interface AppDeps {
  store: Store;
  hosts: HostService;
  images: ImageService;
  vms: VmService;
  migrations: MigrationService;
  /** Hosts' maintenance drains. */
  drains: DrainService;
  /** Host labels, sites and weights, and placement groups. */
  placement: PlacementService;
  metrics: ServerMetrics;
  /** Users, their logins and sessions (routes /v1/users and /v1/session, and the session cookie on every route). */
  users: UserService;
  logger: Logger;
  /** The execution system (routes under /v1/executions, /v1/dlq, /v1/secrets). */
  exec?: ExecSystem;
  /** This cluster's federation (peering and the global view); absent in API-only tests. */
  federation?: Federation;
  /** Clients for the hosts' agents. */
  agents: AgentConnector;
  /** The cluster CA's fingerprint (join tokens carry it). */
  caFingerprint: string;
  /**
   * Serve HTTPS with this certificate chain and key; client certificates are requested and
   * verified against `ca` (agents authenticate with theirs; users with bearer tokens).
   */
  https: { cert: string; key: string; ca: string };
  /** Resource bounds; unset fields come from $NOVACRON_API_LIMITS, else API_LIMITS. */
  limits?: Partial<ApiLimits>;
  /** The built web console to serve at `/` (default dist/console; null: serve none). */
  consoleDir?: string | null;
  /** The alerts firing, from Prometheus (--prometheus-url); absent: GET /v1/alerts says none is configured. */
  alerts?: AlertReader;
  /** The runbooks to serve at /v1/runbooks (default docs/runbooks of this checkout; null: none). */
  runbooksDir?: string | null;
  /** The rebalancer (routes /v1/rebalancer); absent in API-only tests. */
  rebalancer?: Rebalancer;
  /** Signs a metrics scraper's CSR with the cluster CA (server-pki.ts); absent: the route refuses. */
  issueScraperCert?: (csrPem: string, name: string, validDays: number) => Promise<string>;
  /** The control-plane election (GET /v1/control-plane); absent in API-only tests. */
  controlPlane?: ControlPlaneRouteDeps["controlPlane"];
}

/** The TLS server options of the API: TLS 1.3, client certificates optional but verified. */
export function apiTlsOptions(https: { cert: string; key: string; ca: string }): SecureContextOptions & {
  requestCert: boolean;
  rejectUnauthorized: boolean;
  minVersion: "TLSv1.3";
  handshakeTimeout: number;
} {
  return {
    cert: https.cert,
    key: https.key,
    ca: https.ca,
    // Users' tools have no client certificate, so the handshake may go without one; a
    // certificate that is presented is verified, and only routes for agents accept it.
    requestCert: true,
    rejectUnauthorized: false,
    minVersion: "TLSv1.3",
    handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS,
  };
}

/**
 * Fastify's validator factory with two Ajv instances: path parameters and querystrings are
 * coerced from their strings (`?limit=10` is a number), request bodies are not — JSON has
 * types, and `"name": 12345` is a wrong one, not a name.
 */
const buildValidator = ((externalSchemas: Record<string, unknown>, options: ValidatorOptions = {}) => {
  const factory = AjvCompiler() as unknown as (
    schemas: Record<string, unknown>,
    opts: ValidatorOptions,
  ) => Compile;
  const coercing = factory(externalSchemas, options);
  const strict = factory(externalSchemas, {
    ...options,
    customOptions: { ...options.customOptions, coerceTypes: false },
  });
  return (route: { httpPart?: string }) => (route.httpPart === "body" ? strict(route) : coercing(route));
}) as unknown as ValidatorFactory;
type ValidatorOptions = { customOptions?: Record<string, unknown> } & Record<string, unknown>;
type Compile = (route: { httpPart?: string }) => unknown;

/** Builds (but does not start) the API server. */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = Fastify({
    https: apiTlsOptions(deps.https),
    // pino 10's Logger type is newer than the one Fastify's types name; same runtime API.
    loggerInstance: deps.logger as unknown as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: BODY_LIMIT_BYTES,
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH },
    frameworkErrors,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: "array", useDefaults: true } },
    schemaController: { compilersFactory: { buildValidator } },
  }).withTypeProvider<TypeBoxTypeProvider>();

  const limits = resolveApiLimits(deps.limits);
  applyHttpServerLimits(app.server, limits);
  const perAddress = new RateBuckets(limits.addressRate);
  const perToken = new RateBuckets(limits.tokenRate);
  const authFailures = new RateBuckets(limits.authFailureRate);
  const streams = new EventStreams(limits);
  // An event stream never ends by itself, and closing the server waits for every open
  // response: end them first, or a SIGTERM with a console open would hang the shutdown.
  app.addHook("preClose", async () => {
    streams.closeAll("the server is shutting down");
  });

  // The console answers where no API route does (GETs of its own paths and files).
  const consoleDir = deps.consoleDir === null ? undefined : (deps.consoleDir ?? defaultConsoleDir());
  const consoleAssets = consoleDir ? await loadConsoleAssets(consoleDir) : undefined;
  if (consoleDir && !consoleAssets)
    deps.logger.warn({ dir: consoleDir }, "the web console is not built (npm run build): / serves nothing");
  installErrorHandlers(app, consoleAssets ? consoleFallback(consoleAssets) : undefined);
  // Parses the Cookie header (the console's session cookie); no signing secret: the
  // cookie's value is itself an unguessable session token.
  await app.register(cookie);
  await installCompression(app);
  installRequestTracing(app, (req) => isTracedRoute(req.routeOptions.url));
  app.addHook("onRequest", async (req, reply) => {
    const wait = perAddress.take(req.ip);
    if (wait > 0) throw rateLimited(reply, "address", wait);
  });
  app.addHook("preValidation", rejectNulBytes);
  // An empty body with Content-Type: application/json is no body (routes whose body is
  // optional accept it; the others say the body must be an object), not a parse error.
  const parseJson = app.getDefaultJsonParser("error", "error");
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "string" }, (req, body, done) => {
    if (body === "") done(null, undefined);
    else parseJson(req, body.toString(), done);
  });

  app.addHook("onResponse", async (req, reply) => {
    const route = req.routeOptions.url ?? "unmatched";
    deps.metrics.httpRequests.inc({ method: req.method, route, status: String(reply.statusCode) });
    deps.metrics.httpDuration.observe({ method: req.method, route }, reply.elapsedTime / 1000);
  });

  await app.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: {
        title: "NovaCron API",
        version: VERSION,
        description:
          "Control plane for QEMU VMs across hosts. Every /v1 route but POST /v1/session needs a bearer token or the console's session cookie (with X-CSRF-Token on state-changing requests).",
      },
      components: {
        securitySchemes: {
          bearer: { type: "http", scheme: "bearer" },
          session: { type: "apiKey", in: "cookie", name: "__Host-novacron_session" },
        },
      },
      security: [{ bearer: [] }, { session: [] }],
    },
  });

  // Authentication with its two rate limits: an address that spent its failed-auth budget
  // is refused before the token is even looked up; an authenticated principal spends its
  // token's budget.
  const guard = (permission: Requirement) => {
    const check = requirePermission({ read: () => deps.store.read, users: deps.users }, permission);
    return async (req: FastifyRequest, reply: FastifyReply) => {
      const blocked = authFailures.peek(req.ip);
      if (blocked > 0) throw rateLimited(reply, "auth-failures", blocked);
      try {
        await check(req, reply);
      } catch (err) {
        if (isNovaError(err, "NOVA_UNAUTHENTICATED")) authFailures.take(req.ip);
        throw err;
      }
      const wait = perToken.take(req.principal!.id);
      if (wait > 0) throw rateLimited(reply, "token", wait);
    };
  };
  const routeDeps: RouteDeps = {
    store: deps.store,
    hosts: deps.hosts,
    images: deps.images,
    vms: deps.vms,
    migrations: deps.migrations,
    drains: deps.drains,
    placement: deps.placement,
    users: deps.users,
    agents: deps.agents,
    caFingerprint: deps.caFingerprint,
    guard,
    authFailures,
    streams,
    limits,
  };

  app.get("/healthz", { schema: { hide: true } }, async (_req, reply) => {
    try {
      await deps.store.read.query("SELECT 1");
      return {
        status: "ok",
        version: VERSION,
        database: deps.store.db.kind,
        ...(deps.exec ? { executionWorkers: deps.exec.health() } : {}),
      };
    } catch (err) {
      const e = err instanceof NovaError ? err : new NovaError("NOVA_STORE", "database unreachable");
      return reply
        .status(503)
        .send({ status: "unavailable", version: VERSION, database: deps.store.db.kind, error: e.message });
    }
  });

  app.get("/v1/openapi.json", { schema: { hide: true }, onRequest: guard("hosts:read") }, async () =>
    app.swagger(),
  );

  await app.register(hostRoutes, routeDeps);
  await app.register(imageRoutes, routeDeps);
  await app.register(vmRoutes, routeDeps);
  await app.register(placementRoutes, routeDeps);
  await app.register(storagePoolRoutes, routeDeps);
  await app.register(migrationRoutes, routeDeps);
  await app.register(eventRoutes, routeDeps);
  await app.register(agentRoutes, routeDeps);
  await app.register(tokenRoutes, routeDeps);
  await app.register(metricsRoutes, {
    ...routeDeps,
    registry: deps.metrics.registry,
    scrapers: {
      caPem: deps.https.ca,
      issue:
        deps.issueScraperCert ??
        (() => {
          throw new NovaError("NOVA_CONFLICT", "This server issues no scraper certificates.");
        }),
    },
  });
  await app.register(alertRoutes, {
    ...routeDeps,
    ...(deps.alerts ? { alerts: deps.alerts } : {}),
    runbooks:
      deps.runbooksDir === null ? new Map() : await loadRunbooks(deps.runbooksDir ?? defaultRunbooksDir()),
  });
  if (deps.rebalancer) await app.register(rebalancerRoutes, { ...routeDeps, rebalancer: deps.rebalancer });
  await app.register(sessionRoutes, routeDeps);
  await app.register(userRoutes, routeDeps);
  if (deps.exec) {
    await app.register(executionRoutes, { ...routeDeps, exec: deps.exec });
    await app.register(dlqRoutes, { ...routeDeps, exec: deps.exec });
  }
  if (deps.federation) await app.register(federationRoutes, { ...routeDeps, federation: deps.federation });
  if (deps.controlPlane)
    await app.register(controlPlaneRoutes, { ...routeDeps, controlPlane: deps.controlPlane });
  return app;
}

/**
 * Whether a request to `route` starts a trace without a caller's `traceparent`: the API's
 * own routes do; agents' heartbeats (every 2 s each) and the long-lived event stream
 * would only bury the traces an operator looks for.
 */
export function isTracedRoute(route: string | undefined): boolean {
  if (!route?.startsWith("/v1/")) return false;
  return !route.startsWith("/v1/agent/") && route !== "/v1/events";
}
