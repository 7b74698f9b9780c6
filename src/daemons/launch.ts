/**
 * Start-up of the long-lived processes behind `novacron server` and `novacron agent`:
 * turns the CLI's flags into the processes' options, starts them, prints where they
 * listen, and shuts them down cleanly on SIGINT/SIGTERM. The CLI declares the commands and
 * their flags but imports none of this; bin/novacron.js hands it in, so the CLI module
 * stays a client of the API and `novacron vm list` loads no server code.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { startAgent } from "../agent/agent-process.js";
import type { AgentDaemonFlags, DaemonLauncher, ServerDaemonFlags } from "../cli/commands/daemons.js";
import { loadExecConfig, parseWorkersFlag } from "../exec/config.js";
import { NovaError } from "../lib/errors.js";
import { parseListen, parsePort, parsePositiveInt } from "../lib/flags.js";
import { startTracing } from "../lib/tracing-sdk.js";
import { type RunningServer, startServer } from "../server/server-process.js";
import { VERSION } from "../version.js";

/** Resolves once SIGINT or SIGTERM arrives. */
function untilSignal(): Promise<string> {
  return new Promise((resolve) => {
    process.once("SIGINT", () => resolve("SIGINT"));
    process.once("SIGTERM", () => resolve("SIGTERM"));
  });
}

/** A cluster name as `--cluster-name` takes it; NOVA_CONFIG names the rule otherwise. */
function parseClusterName(name: string): string {
  if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(name)) {
    throw new NovaError(
      "NOVA_CONFIG",
      `--cluster-name ${JSON.stringify(name)} is not a valid cluster name: use 1-63 lowercase letters, digits and dashes, starting and ending with a letter or digit`,
    );
  }
  return name;
}

/** A file a flag names, read; NOVA_CONFIG names the flag when it cannot be. */
async function readFlagFile(file: string, flag: string): Promise<string> {
  try {
    return await readFile(path.resolve(file), "utf8");
  } catch (err) {
    throw new NovaError(
      "NOVA_CONFIG",
      `${flag} ${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? String(err)}).`,
    );
  }
}

/** An overcommit ratio between `min` and `max`; NOVA_CONFIG names the flag otherwise. */
function parseRatio(value: string, flag: string, min: number, max: number): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n < min || n > max)
    throw new NovaError(
      "NOVA_CONFIG",
      `${flag} ${JSON.stringify(value)} is not a ratio between ${min} and ${max} (e.g. 1.5).`,
    );
  return n;
}

/** Runs the server in the foreground until a signal. */
export async function runServer(o: ServerDaemonFlags): Promise<void> {
  // Keys, tokens and the database: nothing this process creates is for other users.
  process.umask(0o077);
  const tracing = startTracing({
    serviceName: "novacron-server",
    version: VERSION,
    ...(o.clusterName ? { instance: o.clusterName } : {}),
  });
  const { host, port } = parseListen(o.listen);
  const databaseUrl = o.databaseUrl ?? process.env.DATABASE_URL;
  const dataDir = path.resolve(o.dataDir);
  // Defaults, then the file, then these flags; errors name the flag or key to fix.
  const execConfigFile = o.execConfig ?? process.env.NOVACRON_EXEC_CONFIG;
  const execConfig = await loadExecConfig(execConfigFile ? path.resolve(execConfigFile) : undefined, {
    ...(o.execWorkersMin !== undefined
      ? { workersMin: parseWorkersFlag(o.execWorkersMin, "--exec-workers-min", 0) }
      : {}),
    ...(o.execWorkersMax !== undefined
      ? { workersMax: parseWorkersFlag(o.execWorkersMax, "--exec-workers-max", 1) }
      : {}),
  });
  const prometheusUrl = o.prometheusUrl ?? process.env.NOVACRON_PROMETHEUS_URL;
  if (o.prometheusCa && !prometheusUrl)
    throw new NovaError(
      "NOVA_CONFIG",
      "--prometheus-ca needs --prometheus-url (the Prometheus to trust it for).",
    );
  const strategy = o.placementStrategy ?? process.env.NOVACRON_PLACEMENT_STRATEGY;
  const memoryOvercommit = o.memoryOvercommit ?? process.env.NOVACRON_MEMORY_OVERCOMMIT;
  const vcpuOvercommit = o.vcpuOvercommit ?? process.env.NOVACRON_VCPU_OVERCOMMIT;
  const server = await startServer({
    dataDir,
    placement: {
      ...(strategy !== undefined ? { strategy } : {}),
      ...(memoryOvercommit !== undefined
        ? { memoryOvercommit: parseRatio(memoryOvercommit, "--memory-overcommit", 1, 4) }
        : {}),
      ...(vcpuOvercommit !== undefined
        ? { vcpuOvercommit: parseRatio(vcpuOvercommit, "--vcpu-overcommit", 1, 32) }
        : {}),
    },
    ...(prometheusUrl
      ? {
          prometheus: {
            url: prometheusUrl,
            ...(o.prometheusCa ? { caPem: await readFlagFile(o.prometheusCa, "--prometheus-ca") } : {}),
          },
        }
      : {}),
    host,
    port,
    ...(o.caCert ? { caCertFile: path.resolve(o.caCert) } : {}),
    ...(o.caKey ? { caKeyFile: path.resolve(o.caKey) } : {}),
    ...(o.tlsName.length > 0 ? { tlsNames: o.tlsName } : {}),
    heartbeatTimeoutMs: parsePositiveInt(o.heartbeatTimeout, "--heartbeat-timeout") * 1000,
    ha: {
      leaseMs: parsePositiveInt(o.haLease, "--ha-lease") * 1000,
      ...(o.haFenceHook ? { fenceHook: path.resolve(o.haFenceHook) } : {}),
      fenceHookTimeoutMs: parsePositiveInt(o.haFenceHookTimeout, "--ha-fence-hook-timeout") * 1000,
    },
    maxMigrationsPerHost: parsePositiveInt(o.maxMigrationsPerHost, "--max-migrations-per-host"),
    rebalanceIntervalMs: parsePositiveInt(o.rebalanceInterval, "--rebalance-interval") * 1000,
    loadSampleIntervalMs: parsePositiveInt(o.loadSampleInterval, "--load-sample-interval") * 1000,
    execConfig,
    ...(o.execWorkers ? {} : { execWorkers: false }),
    ...(o.clusterName ? { clusterName: parseClusterName(o.clusterName) } : {}),
    ...(o.federationPort !== undefined
      ? { federationPort: parsePort(o.federationPort, "--federation-port") }
      : {}),
    ...(o.advertiseHost ? { advertiseHost: o.advertiseHost } : {}),
    acpPrepareTimeoutMs: parsePositiveInt(o.acpPrepareTimeout, "--acp-prepare-timeout") * 1000,
    userSecurity: {
      maxFailures: parsePositiveInt(o.loginMaxFailures, "--login-max-failures"),
      lockoutMs: parsePositiveInt(o.loginLockout, "--login-lockout") * 1000,
      sessionIdleTimeoutMs: parsePositiveInt(o.sessionIdleTimeout, "--session-idle-timeout") * 1000,
      sessionLifetimeMs: parsePositiveInt(o.sessionLifetime, "--session-lifetime") * 1000,
    },
    ...(databaseUrl ? { databaseUrl } : {}),
  });
  const lines = [
    `NovaCron server listening on ${server.url} (database: ${server.store.db.kind === "pglite" ? `embedded PGlite in ${dataDir}/db` : "PostgreSQL"})`,
    `Cluster CA: ${server.caCertPath}, fingerprint ${server.caFingerprint}`,
    `Cluster ${server.federation.self.name} (${server.federation.self.id}); federation listener on port ${server.federation.port} (peer with: novacron cluster peer token / peer add)`,
    controlPlaneLine(server.leadership.status()),
    server.created.admin
      ? `Created the admin token: ${server.adminTokenPath} (mode 0600). Log in with: novacron login --server ${server.url} --token-file ${server.adminTokenPath} --fingerprint ${server.caFingerprint}; then create the first admin user: novacron user create NAME --role admin`
      : `Admin token: ${server.adminTokenPath}`,
    `Add a host: novacron host join-token NAME, then on that host: novacron agent --server ${server.url} --name NAME --join-token <token>`,
    ...(server.alertsSource
      ? [
          `Alerts: read from the Prometheus at ${server.alertsSource} (novacron alert list, the console's overview)`,
        ]
      : []),
    ...(tracing.enabled ? [tracingLine()] : []),
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
  const signal = await untilSignal();
  process.stderr.write(`${signal}: shutting down the server\n`);
  await server.close();
  await tracing.shutdown().catch(() => {});
}

/** Runs the agent in the foreground until a signal. */
export async function runAgent(o: AgentDaemonFlags): Promise<void> {
  process.umask(0o077);
  // Only the first start needs one; later starts use the identity saved when joining.
  const joinToken =
    o.joinToken ??
    process.env.NOVACRON_JOIN_TOKEN ??
    (o.joinTokenFile ? (await readFile(o.joinTokenFile, "utf8")).trim() : undefined);
  const { host, port } = parseListen(o.listen);
  const tracing = startTracing({ serviceName: "novacron-agent", version: VERSION, instance: o.name });
  const agent = await startAgent({
    serverUrl: o.server,
    ...(joinToken ? { joinToken } : {}),
    dataDir: path.resolve(o.dataDir),
    name: o.name,
    host,
    port,
    ...(o.dataAddress ? { dataHost: o.dataAddress } : {}),
    dwcpPort: o.dwcp ? parsePort(o.dwcpPort, "--dwcp-port") : null,
    ...(o.dwcpPlaintext ? { dwcpPlaintext: true } : {}),
    stopGraceMs: parsePositiveInt(o.stopGrace, "--stop-grace") * 1000,
    ...(o.memory ? { memoryMiB: parsePositiveInt(o.memory, "--memory") } : {}),
    ...(o.vcpus ? { vcpus: parsePositiveInt(o.vcpus, "--vcpus") } : {}),
    ...(o.qemuBinary !== undefined ? { qemuBinary: o.qemuBinary } : {}),
    ...(o.qemuTlsDir !== undefined ? { qemuTlsDir: path.resolve(o.qemuTlsDir) } : {}),
    ...(o.qemuPlaintext ? { qemuPlaintext: true } : {}),
  });
  process.stdout.write(
    `NovaCron agent ${agent.name} serving on ${agent.url}, joined ${o.server} (accelerator: ${agent.accel}; QEMU ${agent.qemu.version} at ${agent.qemu.binary}, q35 = ${agent.qemu.q35Alias})\n${tracing.enabled ? `${tracingLine()}\n` : ""}`,
  );
  const signal = await untilSignal();
  process.stderr.write(`${signal}: stopping the agent (VMs keep running)\n`);
  await agent.close();
  await tracing.shutdown().catch(() => {});
}

/** Whether this replica leads, for the start-up lines. */
function controlPlaneLine(s: ReturnType<RunningServer["leadership"]["status"]>): string {
  return s.role === "leader"
    ? `Control plane: this server (replica ${s.replicaId}) is the leader, epoch ${s.epoch}; it runs the controllers (novacron cluster leader)`
    : `Control plane: this server (replica ${s.replicaId}) is a follower serving the API; replica ${s.leader ?? "(none yet)"} leads at epoch ${s.epoch} (novacron cluster leader)`;
}

/** Where spans go, for the start-up lines. */
function tracingLine(): string {
  const to = process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
  return `Tracing: spans exported over OTLP/HTTP to ${to}`;
}

/** What bin/novacron.js hands to the CLI. */
export const launcher: DaemonLauncher = { runServer, runAgent };
