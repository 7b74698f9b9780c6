/**
 * `novacron server` and `novacron agent`: the commands and their flags. Starting the
 * processes is not the CLI's job: the launcher (src/daemons/launch.ts) is handed in by
 * bin/novacron.js, so this module imports no server, agent or execution code.
 */
import os from "node:os";
import path from "node:path";
import type { Command } from "commander";
import { NovaError } from "../../lib/errors.js";

/** The flags of `novacron server`, as commander parses them. */
export interface ServerDaemonFlags {
  dataDir: string;
  listen: string;
  databaseUrl?: string;
  heartbeatTimeout: string;
  haLease: string;
  haFenceHook?: string;
  haFenceHookTimeout: string;
  acpPrepareTimeout: string;
  maxMigrationsPerHost: string;
  rebalanceInterval: string;
  loadSampleInterval: string;
  execConfig?: string;
  execWorkersMin?: string;
  execWorkersMax?: string;
  execWorkers: boolean;
  caCert?: string;
  caKey?: string;
  tlsName: string[];
  clusterName?: string;
  federationPort?: string;
  advertiseHost?: string;
  loginMaxFailures: string;
  loginLockout: string;
  sessionIdleTimeout: string;
  sessionLifetime: string;
  prometheusUrl?: string;
  prometheusCa?: string;
  placementStrategy?: string;
  memoryOvercommit?: string;
  vcpuOvercommit?: string;
}

/** The flags of `novacron agent`, as commander parses them. */
export interface AgentDaemonFlags {
  server: string;
  joinToken?: string;
  joinTokenFile?: string;
  dataDir: string;
  listen: string;
  dataAddress?: string;
  dwcpPort: string;
  dwcp: boolean;
  dwcpPlaintext?: boolean;
  name: string;
  memory?: string;
  vcpus?: string;
  stopGrace: string;
  qemuBinary?: string;
  qemuTlsDir?: string;
  qemuPlaintext?: boolean;
}

/** Runs a daemon in the foreground until SIGINT/SIGTERM. */
export interface DaemonLauncher {
  runServer(flags: ServerDaemonFlags): Promise<void>;
  runAgent(flags: AgentDaemonFlags): Promise<void>;
}

/** Loads the launcher when a daemon command runs (the import is the expensive part). */
export type LoadDaemonLauncher = () => Promise<DaemonLauncher>;

function defaultDataDir(kind: "server" | "agent"): string {
  return process.env.NOVACRON_DATA_DIR ?? path.join(os.homedir(), ".local", "share", "novacron", kind);
}

/** Registers `server` and `agent`. */
export function registerDaemonCommands(program: Command, loadLauncher?: LoadDaemonLauncher): void {
  const launcher = async (): Promise<DaemonLauncher> => {
    if (!loadLauncher)
      throw new NovaError(
        "NOVA_CONFIG",
        "This build of the novacron command cannot run daemons; run bin/novacron.js from a built checkout (npm run build).",
      );
    return loadLauncher();
  };
  program
    .command("server")
    .description("Run a cluster's control plane (REST API, controllers, metrics)")
    .option(
      "--data-dir <dir>",
      "tokens and, without --database-url, the embedded database",
      defaultDataDir("server"),
    )
    .option("--listen <host:port>", "API address", "127.0.0.1:7700")
    .option(
      "--database-url <url>",
      "PostgreSQL URL (default: $DATABASE_URL, else embedded PGlite in the data dir)",
    )
    .option("--heartbeat-timeout <seconds>", "mark a host dead after this long without a heartbeat", "10")
    .option(
      "--ha-lease <seconds>",
      "the lease each heartbeat reply grants: an agent kills its HA VMs 5 s before its lease runs out unrenewed, and the server restarts them elsewhere 5 s after it ran out (docs/operations.md, High availability)",
      "15",
    )
    .option(
      "--ha-fence-hook <program>",
      "a program run with a dead host's name (e.g. an IPMI power-off script); exit 0 confirms the host is fenced and its HA VMs restart without waiting out the lease",
    )
    .option("--ha-fence-hook-timeout <seconds>", "bound on the fencing hook (killed after it)", "30")
    .option(
      "--acp-prepare-timeout <seconds>",
      "how long a migration to another cluster waits for that cluster to prepare its copy before the hand-off's authorisation expires and is withdrawn (NOVA_ACP_EXPIRED)",
      "600",
    )
    .option(
      "--max-migrations-per-host <n>",
      "concurrent incoming and outgoing live migrations per host; more wait queued",
      "2",
    )
    .option(
      "--rebalance-interval <seconds>",
      "time between the rebalancer's passes; it moves nothing until turned on (novacron rebalancer set --enable)",
      "30",
    )
    .option(
      "--load-sample-interval <seconds>",
      "keep at most one CPU load sample per host this often (agents report with every heartbeat)",
      "10",
    )
    .option(
      "--exec-config <file>",
      "execution system settings, JSON (default: $NOVACRON_EXEC_CONFIG; docs/executions.md)",
    )
    .option("--exec-workers-min <n>", "execution worker slots kept when idle (overrides the config file)")
    .option("--exec-workers-max <n>", "execution worker slots at most (overrides the config file)")
    .option("--no-exec-workers", "serve the API but run no execution workers (an API-only replica)")
    .option(
      "--ca-cert <file>",
      "your own cluster CA certificate, PEM (default: NovaCron's own, made in <data dir>/pki)",
    )
    .option("--ca-key <file>", "the key of --ca-cert, PEM")
    .option(
      "--tls-name <name>",
      "an extra DNS name or IP for the server certificate (repeatable; NovaCron's own clients check the CA, not the name)",
      (v: string, all: string[]) => [...all, v],
      [] as string[],
    )
    .option(
      "--cluster-name <name>",
      "this cluster's name in a federation (kept in the database; default on first start: this machine's host name)",
    )
    .option(
      "--federation-port <port>",
      "port of the federation listener (ASS over DWCP, mutual TLS with peers only; default: the API port + 1; 0 = any free port)",
    )
    .option(
      "--advertise-host <host>",
      "the host name or address other clusters reach this server at (default: the --listen host, or this machine's name when that is 0.0.0.0)",
    )
    .option(
      "--login-max-failures <n>",
      "failed password or second-factor attempts that lock a user's account (NOVA_ACCOUNT_LOCKED)",
      "5",
    )
    .option(
      "--login-lockout <seconds>",
      "how long a locked account stays locked (and how long failed attempts are remembered)",
      "900",
    )
    .option(
      "--session-idle-timeout <seconds>",
      "a login session ends after this long without a request",
      "1800",
    )
    .option(
      "--session-lifetime <seconds>",
      "a login session ends this long after login, used or not",
      "43200",
    )
    .option(
      "--prometheus-url <url>",
      "the Prometheus that evaluates NovaCron's alert rules: the console and GET /v1/alerts show its firing alerts (default: $NOVACRON_PROMETHEUS_URL; http only to loopback)",
    )
    .option("--prometheus-ca <file>", "a CA certificate (PEM) to trust for an https --prometheus-url")
    .option(
      "--placement-strategy <strategy>",
      "spread: a new VM goes to the emptiest host; binpack: to the fullest that fits (default: $NOVACRON_PLACEMENT_STRATEGY, else spread)",
    )
    .option(
      "--memory-overcommit <ratio>",
      "memory promised to VMs may reach this multiple of a host's memory (default: $NOVACRON_MEMORY_OVERCOMMIT, else 1)",
    )
    .option(
      "--vcpu-overcommit <ratio>",
      "vCPUs promised to VMs may reach this multiple of a host's vCPUs (default: $NOVACRON_VCPU_OVERCOMMIT, else 4)",
    )
    .action(async (o: ServerDaemonFlags) => {
      await (await launcher()).runServer(o);
    });

  program
    .command("agent")
    .description("Run a hypervisor host's agent: runs QEMU VMs for the server")
    .requiredOption(
      "--server <url>",
      "the server to join, e.g. https://127.0.0.1:7700; or the replicas of its control plane separated by commas, tried in order (the next when one fails)",
    )
    .option(
      "--join-token <token>",
      "a one-time join token for this host (novacron host join-token NAME); needed only to join the first time",
    )
    .option("--join-token-file <path>", "read the join token from a file")
    .option("--data-dir <dir>", "VM disks, image store, credentials", defaultDataDir("agent"))
    .option("--listen <host:port>", "agent API address", "127.0.0.1:7800")
    .option(
      "--data-address <host>",
      "address for migration traffic (QEMU migration and NBD listeners; default: the --listen host)",
    )
    .option(
      "--qemu-tls-dir <dir>",
      "QEMU's TLS credentials for migrations (ca-cert.pem, server-cert.pem, server-key.pem, client-cert.pem, client-key.pem; default: written from the host's identity into <data dir>/pki/qemu)",
    )
    .option("--qemu-plaintext", "INSECURE: QEMU's migration and NBD listeners without TLS")
    .option("--name <name>", "host name in the cluster", os.hostname().toLowerCase())
    .option("--dwcp-port <port>", "DWCP migration listener port on the data address (0 = any free port)", "0")
    .option("--no-dwcp", "do not offer DWCP for migrations (QEMU's own transport only)")
    .option(
      "--dwcp-plaintext",
      "run DWCP without TLS: VM memory and disks cross the network unencrypted (benchmarks and debugging only; logged loudly)",
    )
    .option("--memory <MiB>", "memory offered to VMs (default: all of this machine's)")
    .option("--vcpus <n>", "vCPUs offered to VMs (default: this machine's)")
    .option("--stop-grace <seconds>", "ACPI shutdown grace before a hard stop", "30")
    .option(
      "--qemu-binary <path>",
      "the qemu-system-x86_64 to run VMs with, 7.2 or newer (default: $NOVACRON_QEMU_BINARY, else qemu-system-x86_64 on PATH)",
    )
    .action(async (o: AgentDaemonFlags) => {
      await (await launcher()).runAgent(o);
    });
}
