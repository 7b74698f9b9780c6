/**
 * The `novacron server` process: secures its data dir (0700), opens the store (PostgreSQL
 * when DATABASE_URL is set, else PGlite in the data dir), loads or creates the cluster CA,
 * creates the admin token on first start and writes it 0600 into the data dir, starts the
 * HTTPS API and the control-plane election; while it leads, the controllers (reconciler,
 * migrations, drains, liveness monitor, the federation's leader loops: controllers.ts).
 * Renews its own certificate before it expires, and shuts all of it down cleanly on
 * SIGINT/SIGTERM.
 */
import { randomUUID } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import path from "node:path";
import type { FastifyInstance } from "fastify";
import pino, { type Logger } from "pino";
import { apiTlsOptions, buildApp } from "../api/app.js";
import { AgentConnector } from "../cluster/agent-client.js";
import { EventRelay } from "../cluster/event-relay.js";
import { type HaOptions, HaRestarter, leaseOf } from "../cluster/ha-restarter.js";
import { HostService } from "../cluster/host-service.js";
import { ImageService } from "../cluster/image-service.js";
import type { LeaseTiming } from "../cluster/leader-lease.js";
import { Leadership } from "../cluster/leadership.js";
import { ClusterPlacement, type PlacementPolicyInput, placementPolicy } from "../cluster/placement.js";
import { PlacementService } from "../cluster/placement-service.js";
import { Reconciler } from "../cluster/reconciler.js";
import { claimClusterCa } from "../cluster/store/cluster-ca.js";
import { getLivePeer, getPeerById } from "../cluster/store/federation.js";
import { claimSecretsKey } from "../cluster/store/secrets-key-check.js";
import { Store } from "../cluster/store/store.js";
import { countTokens, createToken } from "../cluster/store/tokens.js";
import { type UserSecurityConfig, UserService } from "../cluster/user-service.js";
import { VmService } from "../cluster/vm-service.js";
import { type ExecConfig, loadExecConfig } from "../exec/config.js";
import { startExecSystem } from "../exec/system.js";
import { Federation } from "../federation/federation.js";
import { secureDataDir, tightenTree } from "../lib/data-dir.js";
import { NovaError } from "../lib/errors.js";
import { traceLogFields } from "../lib/tracing.js";
import { AgentCopies } from "../migration/acp-copies.js";
import { ClusterTarget } from "../migration/cluster-target.js";
import { DrainExecutor } from "../migration/drain-executor.js";
import { DrainService } from "../migration/drain-service.js";
import { MigrationService } from "../migration/migration-service.js";
import { MigrationOrchestrator } from "../migration/orchestrator.js";
import { Rebalancer } from "../migration/rebalancer.js";
import {
  registerControlPlaneMetrics,
  registerEventRelayMetrics,
} from "../observability/control-plane-metrics.js";
import { createServerMetrics } from "../observability/metrics.js";
import { PrometheusAlerts } from "../observability/prometheus-alerts.js";
import { certInfo } from "../security/pki.js";
import { VERSION } from "../version.js";
import { LeaderControllers } from "./controllers.js";
import { loadServerPki } from "./server-pki.js";

/** Server options (flags, environment). */
export interface ServerOptions {
  /** Data dir: tokens, and the embedded database when no URL is given. */
  dataDir: string;
  /** PostgreSQL URL; when absent, PGlite in `<dataDir>/db`. */
  databaseUrl?: string;
  /** Listen address. @defaultValue "127.0.0.1" */
  host?: string;
  /** An operator's CA (PEM files) instead of NovaCron's own in `<dataDir>/pki`. */
  caCertFile?: string;
  caKeyFile?: string;
  /** Extra DNS names / IPs in the server certificate (for tools that check them). */
  tlsNames?: string[];
  /** Listen port (0 = any free port). @defaultValue 7700 */
  port?: number;
  /** A host is dead after this long without a heartbeat. @defaultValue 10000 */
  heartbeatTimeoutMs?: number;
  /** HA restart with fencing: the lease, margins and fencing hook (cluster/ha-restarter.ts). */
  ha?: HaOptions;
  /** Concurrent incoming and outgoing migrations per host; more are queued. @defaultValue 2 */
  maxMigrationsPerHost?: number;
  /** Reconcile pass interval. @defaultValue 1000 */
  reconcileIntervalMs?: number;
  /** Execution system limits and pool size; default: $NOVACRON_EXEC_CONFIG (a JSON file), else built-in. */
  execConfig?: ExecConfig;
  /** Run execution workers in this server. @defaultValue true */
  execWorkers?: boolean;
  /** This cluster's name in a federation (stored; default on first start: the host name). */
  clusterName?: string;
  /** Port of the federation (ASS over DWCP) listener. @defaultValue port + 1 (0 when port is 0) */
  federationPort?: number;
  /** Host name or address peers and tokens use to reach this server. @defaultValue the listen host (the machine's name when that is a wildcard) */
  advertiseHost?: string;
  /** Longest a federation pull waits for news (the idle heartbeat). @defaultValue 5000 */
  federationHeartbeatMs?: number;
  /** A peer not heard from for this long is shown as stale. @defaultValue 3 heartbeats + 5 s */
  federationStaleAfterMs?: number;
  /** How long a hand-off's `prepare` authorises it before it is withdrawn (cluster-target.ts). @defaultValue 600000 */
  acpPrepareTimeoutMs?: number;
  /** Lock-out after failed logins and session lifetimes (cluster/user-service.ts); unset fields take the defaults. */
  userSecurity?: Partial<UserSecurityConfig>;
  logger?: Logger;
  /** The built web console to serve at `/` (default dist/console; null: none). */
  consoleDir?: string | null;
  /** Time between the rebalancer's passes (it acts only when turned on). @defaultValue 30000 */
  rebalanceIntervalMs?: number;
  /** At most one load sample per host this often. @defaultValue 10000 */
  loadSampleIntervalMs?: number;
  /** The Prometheus that evaluates NovaCron's alert rules (GET /v1/alerts reads its alerts). */
  prometheus?: { url: string; caPem?: string };
  /** Placement policy (docs/placement.md); unset fields take ITP's defaults (spread, memory ×1, vCPUs ×4). */
  placement?: PlacementPolicyInput;
  /** The control-plane leader lease (cluster/leader-lease.ts); unset fields take the defaults. */
  leaseTiming?: Partial<LeaseTiming>;
}

/** A running server. */
export interface RunningServer {
  /** https://host:port */
  url: string;
  adminTokenPath: string;
  /** The cluster CA certificate's path and fingerprint (what `login` and join tokens pin). */
  caCertPath: string;
  caFingerprint: string;
  /** The cluster CA certificate, PEM. */
  caPem: string;
  /** The admin token if it was created on this start (undefined when it existed already). */
  created: { admin?: string };
  app: FastifyInstance;
  store: Store;
  federation: Federation;
  /** The control-plane election: whether this replica leads (controllers.ts runs while it does). */
  leadership: Leadership;
  /** The Prometheus alerts are read from, without credentials; absent without --prometheus-url. */
  alertsSource?: string;
  close(): Promise<void>;
}

/** Starts a server. */
export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const log =
    options.logger ??
    pino({ level: process.env.NOVACRON_LOG_LEVEL ?? "info", mixin: traceLogFields }, pino.destination(2));
  // A wrong --prometheus-url is refused before anything starts.
  const alerts = options.prometheus ? new PrometheusAlerts(options.prometheus) : undefined;
  await secureDataDir(options.dataDir, log);
  const pki = await loadServerPki({
    dataDir: options.dataDir,
    ...(options.caCertFile ? { caCertFile: options.caCertFile } : {}),
    ...(options.caKeyFile ? { caKeyFile: options.caKeyFile } : {}),
    ...(options.tlsNames ? { names: options.tlsNames } : {}),
  });
  const store = await Store.open(
    options.databaseUrl ? { url: options.databaseUrl } : { dataDir: path.join(options.dataDir, "db") },
  );

  // PGlite's file layer makes its files group/world-writable; the 0700 dir already keeps
  // others out, and this keeps the files themselves 0600 as well.
  if (!options.databaseUrl) await tightenTree(path.join(options.dataDir, "db"));
  try {
    await claimClusterCa(store.db, pki.caFingerprint, pki.caCertPath);
  } catch (err) {
    await store.close().catch(() => {});
    throw err;
  }
  const adminTokenPath = path.join(options.dataDir, "admin.token");
  const created: RunningServer["created"] = {};
  if ((await countTokens(store.read, "admin")) === 0) {
    created.admin = (await createToken(store.db, "initial admin", "admin")).token;
    await writeFile(adminTokenPath, `${created.admin}\n`, { mode: 0o600 });
  }
  const metrics = createServerMetrics(store, () => [
    { certificate: "ca", pem: pki.ca.certPem },
    { certificate: "server", pem: pki.server.certPem },
  ]);
  // The federation claims the cluster's identity first: its id is the owner in the fencing
  // token of every VM this cluster owns, which the reconciler, the migrations and the
  // agents' registration replies need (docs/federation.md §10).
  const listenHost = options.host ?? "127.0.0.1";
  const advertiseHost =
    options.advertiseHost ?? (listenHost === "0.0.0.0" || listenHost === "::" ? hostname() : listenHost);
  let apiUrl = "";
  let federation: Federation;
  try {
    federation = await Federation.start({
      store,
      log: log.child({ component: "federation" }),
      registry: metrics.registry,
      ...(options.clusterName ? { name: options.clusterName } : {}),
      apiUrl: () => apiUrl,
      listenHost,
      listenPort: options.federationPort ?? (options.port === 0 ? 0 : (options.port ?? 7700) + 1),
      advertiseHost,
      pki: {
        caPem: pki.ca.certPem,
        caFingerprint: pki.caFingerprint,
        certChainPem: pki.serverChainPem,
        keyPem: pki.server.keyPem,
      },
      ...(options.federationHeartbeatMs ? { heartbeatMs: options.federationHeartbeatMs } : {}),
      ...(options.federationStaleAfterMs ? { staleAfterMs: options.federationStaleAfterMs } : {}),
      // Bound late: the agents and the orchestrator exist once the cluster id is known; the
      // hand-off loop starts with federation.run(), after both.
      acp: {
        source: {
          state: (h) => copies.state(h),
          fence: (h, t) => copies.fence(h, t),
          remove: (h) => copies.remove(h),
          resume: (h, t) => copies.resume(h, t),
        },
        target: {
          ensureImage: (h, ca, spec) => copies.ensureImage(h, ca, spec),
          place: (tx, spec, copiedTo) => copies.place(tx, spec, copiedTo),
          start: (h, p) => copies.start(h, p),
          state: (h) => copies.state(h),
          resume: (h, t) => copies.resume(h, t),
          remove: (h) => copies.remove(h),
        },
        transferActive: (id) => orchestrator.isRunning(id),
      },
    });
  } catch (err) {
    await store.close().catch(() => {});
    throw err;
  }
  const clusterId = federation.self.id;
  const agents = new AgentConnector(() => ({
    caPem: pki.ca.certPem,
    certPem: pki.server.certPem,
    keyPem: pki.server.keyPem,
  }));

  // One placement (ITP with the cluster's policy) for every decision: create, migration, drain, arrival.
  const placement = new ClusterPlacement(placementPolicy(options.placement ?? {}));
  const copies = new AgentCopies(store, agents, placement);
  const acp = federation.acp!;
  const reconciler = new Reconciler(store, log.child({ component: "reconciler" }), agents, {
    clusterId,
    intervalMs: options.reconcileIntervalMs ?? 1000,
  });
  // A change made through this replica wakes the local controller, and when this replica
  // does not lead, the leader's (leadership.ts: NOTIFY); `leadership` exists once the API
  // listens, and until then nothing can change anything.
  let leadership: Leadership | undefined;
  const wakeLeader = () => leadership?.wakeLeader();
  const wake = () => {
    reconciler.wake();
    wakeLeader();
  };
  const orchestrator = new MigrationOrchestrator(
    store,
    log.child({ component: "migrations" }),
    wake,
    agents,
    {
      clusterId,
      maxOutgoingPerHost: options.maxMigrationsPerHost ?? 2,
      maxIncomingPerHost: options.maxMigrationsPerHost ?? 2,
      clusterTarget: async (m) => {
        const peer = m.targetClusterId ? await getPeerById(store.read, m.targetClusterId) : undefined;
        if (!peer)
          throw new NovaError(
            "NOVA_FED_PEER_UNKNOWN",
            `the destination cluster of migration ${m.id} was removed`,
          );
        return new ClusterTarget(store, acp, peer, m, agents, options.acpPrepareTimeoutMs);
      },
      onEnded: (m) => metrics.migrations.ended(m),
    },
  );
  const hosts = new HostService(
    store,
    wake,
    log.child({ component: "hosts" }),
    { caPem: pki.ca.certPem, issueHostCert: (csr, host) => pki.issueHostCert(csr, host) },
    clusterId,
    options.loadSampleIntervalMs,
    leaseOf(options.ha ?? {}),
  );
  const ha = new HaRestarter(
    store,
    log.child({ component: "ha" }),
    wake,
    options.ha ?? {},
    (outcome) => metrics.haRestarts.inc({ outcome }),
    placement,
  );
  const vms = new VmService(store, wake, placement);
  const migrations = new MigrationService(
    store,
    () => {
      orchestrator.wake();
      wakeLeader();
    },
    {
      selfName: federation.self.name,
      peer: async (name) => {
        const row = await getLivePeer(store.read, name);
        const view = (await federation.clusters()).find((c) => c.id === row.id);
        return { row, stale: view?.stale ?? true };
      },
    },
    placement,
  );
  const drainExecutor = new DrainExecutor(store, migrations, log.child({ component: "drains" }));
  const rebalancer = new Rebalancer(store, migrations, log.child({ component: "rebalancer" }), {
    ...(options.rebalanceIntervalMs ? { intervalMs: options.rebalanceIntervalMs } : {}),
    registry: metrics.registry,
    placement,
  });
  const drains = new DrainService(
    store,
    () => {
      drainExecutor.wake();
      wakeLeader();
    },
    placement,
  );
  const placementSettings = new PlacementService(store);
  const execConfigFile = process.env.NOVACRON_EXEC_CONFIG;
  let exec: Awaited<ReturnType<typeof startExecSystem>>;
  try {
    exec = await startExecSystem({
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
      agents,
      registry: metrics.registry,
      log: log.child({ component: "executions" }),
      workers: options.execWorkers ?? process.env.NOVACRON_EXEC_WORKERS !== "0",
    });
  } catch (err) {
    await federation.close().catch(() => {});
    await store.close().catch(() => {});
    throw err;
  }
  // A replica with another secrets key than the database's is refused here (NOVA_CONFIG).
  try {
    await claimSecretsKey(
      store.db,
      exec.secretKey,
      process.env.NOVACRON_SECRETS_KEY ? "NOVACRON_SECRETS_KEY" : path.join(options.dataDir, "secrets.key"),
    );
  } catch (err) {
    await exec.close().catch(() => {});
    await federation.close().catch(() => {});
    await store.close().catch(() => {});
    throw err;
  }
  // The execution system's key (the server's secrets key) seals users' TOTP secrets too.
  const users = new UserService(store, exec.secretKey, options.userSecurity);
  const sealed = await users.sealClearTotpSecrets();
  if (sealed > 0) log.info({ users: sealed }, "sealed TOTP secrets stored in clear by an older server");
  const controllers = new LeaderControllers(
    [
      { name: "federation", start: () => federation.lead(), stop: () => federation.unlead() },
      {
        name: "reconciler",
        start: () => reconciler.start(),
        stop: () => reconciler.stop(),
        wake: () => reconciler.wake(),
      },
      {
        name: "migrations",
        start: () => orchestrator.start(),
        stop: () => orchestrator.stop(),
        wake: () => orchestrator.wake(),
      },
      {
        name: "drains",
        start: () => drainExecutor.start(),
        stop: () => drainExecutor.stop(),
        wake: () => drainExecutor.wake(),
      },
      {
        name: "rebalancer",
        start: () => rebalancer.start(),
        stop: () => rebalancer.stop(),
        // Not woken by every change: a pass reads the whole cluster, and its interval is
        // what its hold and window are measured in.
      },
      {
        name: "ha",
        start: () => ha.start(),
        stop: () => ha.stop(),
      },
      {
        name: "liveness",
        start: () => hosts.startLivenessMonitor(options.heartbeatTimeoutMs ?? 10_000),
        stop: async () => hosts.stopLivenessMonitor(),
      },
    ],
    log.child({ component: "controllers" }),
  );
  const replicaId = randomUUID();
  const election = new Leadership({
    store,
    ...(options.databaseUrl ? { databaseUrl: options.databaseUrl } : {}),
    self: () => ({ id: replicaId, apiUrl, hostName: hostname(), version: VERSION }),
    ...(options.leaseTiming ? { timing: options.leaseTiming } : {}),
    log: log.child({ component: "election" }),
    onElected: (epoch) => controllers.start(epoch),
    onDeposed: (reason) => controllers.stop(reason),
    onWake: () => controllers.wake(),
  });
  leadership = election;
  registerControlPlaneMetrics(metrics.registry, () => election.status());
  const app = await buildApp({
    federation,
    store,
    hosts,
    images: new ImageService(store, agents),
    vms,
    migrations,
    drains,
    rebalancer,
    placement: placementSettings,
    metrics,
    users,
    logger: log,
    exec,
    agents,
    caFingerprint: pki.caFingerprint,
    https: { cert: pki.serverChainPem, key: pki.server.keyPem, ca: pki.ca.certPem },
    ...(options.consoleDir !== undefined ? { consoleDir: options.consoleDir } : {}),
    issueScraperCert: (csr, name, days) => pki.issueScraperCert(csr, name, days),
    ...(alerts ? { alerts } : {}),
    controlPlane: { status: () => election.status(), leaseTtlMs: election.leaseTiming.ttlMs },
  });
  try {
    await app.listen({ host: options.host ?? "127.0.0.1", port: options.port ?? 7700 });
  } catch (err) {
    await federation.close().catch(() => {});
    await exec.close().catch(() => {});
    await app.close().catch(() => {});
    await store.close().catch(() => {});
    throw err;
  }
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : options.port;
  const url = `https://${listenHost.includes(":") ? `[${listenHost}]` : listenHost}:${port}`;
  apiUrl = `https://${advertiseHost.includes(":") ? `[${advertiseHost}]` : advertiseHost}:${port}`;
  // Other replicas' events, committed and live-only, reach this replica's bus (SSE streams,
  // the drain executor's wakes): PostgreSQL only, where replicas can exist.
  const relay = options.databaseUrl
    ? new EventRelay(store, options.databaseUrl, replicaId, log.child({ component: "event-relay" }))
    : undefined;
  await relay?.start();
  if (relay) registerEventRelayMetrics(metrics.registry, () => relay.liveDropped);
  // Any change committed on a follower (a heartbeat's observations, a drain's step) may be
  // something the leader's loops act on; events relayed from elsewhere are no news.
  const unsubscribeWakes = store.bus.subscribe((e) => {
    if (!relay?.isRelayed(e)) election.wakeLeader();
  });
  await election.start();
  log.info(
    {
      url,
      database: store.db.kind,
      caFingerprint: pki.caFingerprint,
      replica: replicaId,
      leader: election.isLeader,
    },
    "server started",
  );

  // The server's certificate is renewed in place a month before it expires (checked
  // hourly); connections already open keep the old one until they close.
  const renewal = setInterval(() => {
    const left = certInfo(pki.server.certPem).notAfter.getTime() - Date.now();
    if (left > 30 * 86_400_000) return;
    void pki
      .renewServerCert()
      .then(() => {
        (app.server as unknown as import("node:tls").Server).setSecureContext(
          apiTlsOptions({ cert: pki.serverChainPem, key: pki.server.keyPem, ca: pki.ca.certPem }),
        );
        agents.reset();
        log.info({ notAfter: certInfo(pki.server.certPem).notAfter }, "server certificate renewed");
      })
      .catch((err) => log.error({ err }, "server certificate renewal failed; will retry"));
  }, 3_600_000);
  renewal.unref();

  let closing: Promise<void> | undefined;
  return {
    url,
    adminTokenPath,
    caCertPath: pki.caCertPath,
    caFingerprint: pki.caFingerprint,
    caPem: pki.ca.certPem,
    created,
    app,
    store,
    federation,
    leadership: election,
    ...(alerts ? { alertsSource: alerts.source } : {}),
    close: () => {
      closing ??= (async () => {
        clearInterval(renewal);
        unsubscribeWakes();
        await alerts?.close().catch(() => {});
        // Drains first: running steps finish (or are handed back) while the store is open.
        await exec.close();
        // A leader stops its controllers and releases the lease: another replica leads at its next tick.
        await election.stop();
        await relay?.close();
        await federation.close();
        await closeApi(app, log);
        agents.reset();
        await store.close();
      })();
      return closing;
    },
  };
}

/** How long a shutdown waits for the API's connections to end by themselves. */
const API_CLOSE_GRACE_MS = 5000;

/**
 * Closes the API. Its event streams end first (app.ts, preClose); a connection still open
 * after a grace — a request in flight, a browser's idle socket that a shutdown saw
 * before it was idle — is cut, so SIGTERM never hangs on a client: a console left open
 * held one shutdown for 60 s.
 */
async function closeApi(app: FastifyInstance, log: Logger): Promise<void> {
  const cut = setTimeout(() => {
    // Counted before the cut, so the warning says how many the shutdown cut.
    app.server.getConnections((_err, open) => {
      if (open > 0)
        log.warn(
          { connections: open },
          `cutting API connections still open ${API_CLOSE_GRACE_MS} ms into the shutdown`,
        );
      app.server.closeAllConnections();
    });
  }, API_CLOSE_GRACE_MS);
  cut.unref();
  try {
    await app.close();
  } finally {
    clearTimeout(cut);
  }
}
