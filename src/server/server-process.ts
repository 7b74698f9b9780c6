/**
 * The `novacron server` process: opens the store (PostgreSQL when DATABASE_URL is set,
 * else PGlite in the data dir), creates the admin and join tokens on first start and
 * writes them 0600 into the data dir, starts the API, the reconciler and the liveness
 * monitor, and shuts all of it down cleanly on SIGINT/SIGTERM.
 */
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import type { FastifyInstance } from "fastify";
import pino, { type Logger } from "pino";
import { buildApp } from "../api/app.js";
import { HostService } from "../cluster/host-service.js";
import { ImageService } from "../cluster/image-service.js";
import { Reconciler } from "../cluster/reconciler.js";
import { Store } from "../cluster/store/store.js";
import { countTokens, createToken } from "../cluster/store/tokens.js";
import { VmService } from "../cluster/vm-service.js";
import { type ExecConfig, loadExecConfig } from "../exec/config.js";
import { startExecSystem } from "../exec/system.js";
import { MigrationService } from "../migration/migration-service.js";
import { MigrationOrchestrator } from "../migration/orchestrator.js";
import { createServerMetrics } from "../observability/metrics.js";

/** Server options (flags, environment). */
export interface ServerOptions {
  /** Data dir: tokens, and the embedded database when no URL is given. */
  dataDir: string;
  /** PostgreSQL URL; when absent, PGlite in `<dataDir>/db`. */
  databaseUrl?: string;
  /** Listen address. @defaultValue "127.0.0.1" */
  host?: string;
  /** Listen port (0 = any free port). @defaultValue 7700 */
  port?: number;
  /** A host is dead after this long without a heartbeat. @defaultValue 10000 */
  heartbeatTimeoutMs?: number;
  /** Concurrent incoming and outgoing migrations per host; more are queued. @defaultValue 2 */
  maxMigrationsPerHost?: number;
  /** Reconcile pass interval. @defaultValue 1000 */
  reconcileIntervalMs?: number;
  /** Execution system limits and pool size; default: $NOVACRON_EXEC_CONFIG (a JSON file), else built-in. */
  execConfig?: ExecConfig;
  /** Run execution workers in this server. @defaultValue true */
  execWorkers?: boolean;
  logger?: Logger;
}

/** A running server. */
export interface RunningServer {
  url: string;
  adminTokenPath: string;
  joinTokenPath: string;
  /** Tokens created on this start (undefined when they existed already). */
  created: { admin?: string; join?: string };
  app: FastifyInstance;
  store: Store;
  close(): Promise<void>;
}

/** Starts a server. */
export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const log =
    options.logger ?? pino({ level: process.env.NOVACRON_LOG_LEVEL ?? "info" }, pino.destination(2));
  await mkdir(options.dataDir, { recursive: true, mode: 0o700 });
  const store = await Store.open(
    options.databaseUrl ? { url: options.databaseUrl } : { dataDir: path.join(options.dataDir, "db") },
  );

  const adminTokenPath = path.join(options.dataDir, "admin.token");
  const joinTokenPath = path.join(options.dataDir, "join.token");
  const created: RunningServer["created"] = {};
  if ((await countTokens(store.read, "admin")) === 0) {
    created.admin = (await createToken(store.db, "initial admin", "admin")).token;
    await writeFile(adminTokenPath, `${created.admin}\n`, { mode: 0o600 });
  }
  if ((await countTokens(store.read, "join")) === 0) {
    created.join = (await createToken(store.db, "agent join", "join")).token;
    await writeFile(joinTokenPath, `${created.join}\n`, { mode: 0o600 });
  }

  const reconciler = new Reconciler(store, log.child({ component: "reconciler" }), {
    intervalMs: options.reconcileIntervalMs ?? 1000,
  });
  const wake = () => reconciler.wake();
  const orchestrator = new MigrationOrchestrator(store, log.child({ component: "migrations" }), wake, {
    maxOutgoingPerHost: options.maxMigrationsPerHost ?? 2,
    maxIncomingPerHost: options.maxMigrationsPerHost ?? 2,
  });
  const hosts = new HostService(store, wake, log.child({ component: "hosts" }));
  const vms = new VmService(store, wake);
  const migrations = new MigrationService(store, () => orchestrator.wake());
  const metrics = createServerMetrics(store);
  const execConfigFile = process.env.NOVACRON_EXEC_CONFIG;
  const exec = await startExecSystem({
    store,
    dataDir: options.dataDir,
    ...(options.databaseUrl ? { databaseUrl: options.databaseUrl } : {}),
    ...(options.execConfig
      ? { config: options.execConfig }
      : execConfigFile
        ? { config: await loadExecConfig(execConfigFile) }
        : {}),
    vms,
    migrations,
    registry: metrics.registry,
    log: log.child({ component: "executions" }),
    workers: options.execWorkers ?? process.env.NOVACRON_EXEC_WORKERS !== "0",
  });
  const app = await buildApp({
    store,
    hosts,
    images: new ImageService(store),
    vms,
    migrations,
    metrics,
    logger: log,
    exec,
  });
  try {
    await app.listen({ host: options.host ?? "127.0.0.1", port: options.port ?? 7700 });
  } catch (err) {
    await exec.close().catch(() => {});
    await app.close().catch(() => {});
    await store.close().catch(() => {});
    throw err;
  }
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : options.port;
  const url = `http://${options.host ?? "127.0.0.1"}:${port}`;
  reconciler.start();
  orchestrator.start();
  hosts.startLivenessMonitor(options.heartbeatTimeoutMs ?? 10_000);
  log.info({ url, database: store.db.kind }, "server started");

  let closing: Promise<void> | undefined;
  return {
    url,
    adminTokenPath,
    joinTokenPath,
    created,
    app,
    store,
    close: () => {
      closing ??= (async () => {
        hosts.stopLivenessMonitor();
        // Drains first: running steps finish (or are handed back) while the store is open.
        await exec.close();
        await orchestrator.stop();
        await reconciler.stop();
        await app.close();
        await store.close();
      })();
      return closing;
    },
  };
}
