/**
 * The execution system as the server runs it: the wake-up channel, the secrets key, the
 * service the API calls, the worker pool running executions (with its reaper hooks), and
 * the pruner deleting finished work past its retention.
 */
import path from "node:path";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { AgentConnector } from "../cluster/agent-client.js";
import type { Store } from "../cluster/store/store.js";
import type { VmService } from "../cluster/vm-service.js";
import type { MigrationService } from "../migration/migration-service.js";
import { type ExecConfig, resolveExecConfig } from "./config.js";
import { registerExecMetrics } from "./metrics.js";
import { WakeChannel } from "./notify.js";
import { type PoolHealth, WorkerPool } from "./pool.js";
import { Pruner } from "./pruner.js";
import { EXECUTION_QUEUE, ExecutionRunner } from "./runner.js";
import { SecretKey } from "./secrets.js";
import { ExecutionService } from "./service.js";

/** How the server builds it. */
export interface ExecSystemOptions {
  store: Store;
  /** PostgreSQL URL for LISTEN/NOTIFY (none on PGlite). */
  databaseUrl?: string;
  dataDir: string;
  config?: ExecConfig;
  vms: VmService;
  migrations?: MigrationService;
  /** Clients for the hosts' agents (host.command and console steps). */
  agents: AgentConnector;
  registry?: Registry;
  log: Logger;
  /** false: serve the API but run no workers (an API-only replica). @defaultValue true */
  workers?: boolean;
}

/** The running execution system. */
export interface ExecSystem {
  service: ExecutionService;
  secretKey: SecretKey;
  pool: WorkerPool | undefined;
  /** Runs where the workers run (an API-only replica leaves it to them). */
  pruner: Pruner | undefined;
  health(): PoolHealth | { status: "disabled" };
  close(): Promise<void>;
}

/** Builds and starts it. */
export async function startExecSystem(o: ExecSystemOptions): Promise<ExecSystem> {
  const config = o.config ?? resolveExecConfig();
  const wake = new WakeChannel(o.databaseUrl, o.log);
  await wake.start();
  const secretKey = await SecretKey.load(path.join(o.dataDir, "secrets.key"));
  const service = new ExecutionService(o.store, config, wake);
  const metrics = o.registry ? registerExecMetrics(o.registry, o.store) : undefined;
  const runner = new ExecutionRunner({
    store: o.store,
    config,
    secretKey,
    wake,
    services: {
      store: o.store,
      vms: o.vms,
      agents: o.agents,
      ...(o.migrations ? { migrations: o.migrations } : {}),
    },
    log: o.log,
    ...(metrics ? { observer: metrics.runner } : {}),
  });
  const pool =
    o.workers === false
      ? undefined
      : new WorkerPool({
          db: o.store.db,
          handlers: { [EXECUTION_QUEUE]: runner.handle },
          pool: config.pool,
          backoff: config.backoff,
          wake,
          log: o.log,
          ...(metrics ? { observer: metrics.pool } : {}),
          onReaped: (jobs) => service.onReaped(jobs),
          onReapTick: async () => {
            await service.expireApprovals();
          },
        });
  pool?.start();
  const pruner = pool ? new Pruner(o.store.db, config.retention, o.log) : undefined;
  pruner?.start();
  return {
    service,
    secretKey,
    pool,
    pruner,
    health: () => pool?.health() ?? { status: "disabled" },
    close: async () => {
      await pruner?.stop();
      await pool?.stop();
      await wake.close();
    },
  };
}
