/** `novacron server` and `novacron agent`: run the long-lived processes in the foreground. */
import { readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import type { Command } from "commander";
import { startAgent } from "../../agent/agent-process.js";
import { loadExecConfig, parseWorkersFlag } from "../../exec/config.js";
import { NovaError } from "../../lib/errors.js";
import { startServer } from "../../server/server-process.js";
import { parseListen } from "../config.js";
import { parsePositiveInt } from "./images.js";

/** Resolves once SIGINT or SIGTERM arrives. */
function untilSignal(): Promise<string> {
  return new Promise((resolve) => {
    process.once("SIGINT", () => resolve("SIGINT"));
    process.once("SIGTERM", () => resolve("SIGTERM"));
  });
}

function defaultDataDir(kind: "server" | "agent"): string {
  return process.env.NOVACRON_DATA_DIR ?? path.join(os.homedir(), ".local", "share", "novacron", kind);
}

/** Registers `server` and `agent`. */
export function registerDaemonCommands(program: Command): void {
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
      "--max-migrations-per-host <n>",
      "concurrent incoming and outgoing live migrations per host; more wait queued",
      "2",
    )
    .option(
      "--exec-config <file>",
      "execution system settings, JSON (default: $NOVACRON_EXEC_CONFIG; docs/executions.md)",
    )
    .option("--exec-workers-min <n>", "execution worker slots kept when idle (overrides the config file)")
    .option("--exec-workers-max <n>", "execution worker slots at most (overrides the config file)")
    .option("--no-exec-workers", "serve the API but run no execution workers (an API-only replica)")
    .action(
      async (o: {
        dataDir: string;
        listen: string;
        databaseUrl?: string;
        heartbeatTimeout: string;
        maxMigrationsPerHost: string;
        execConfig?: string;
        execWorkersMin?: string;
        execWorkersMax?: string;
        execWorkers: boolean;
      }) => {
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
        const server = await startServer({
          dataDir,
          host,
          port,
          heartbeatTimeoutMs: parsePositiveInt(o.heartbeatTimeout, "--heartbeat-timeout") * 1000,
          maxMigrationsPerHost: parsePositiveInt(o.maxMigrationsPerHost, "--max-migrations-per-host"),
          execConfig,
          ...(o.execWorkers ? {} : { execWorkers: false }),
          ...(databaseUrl ? { databaseUrl } : {}),
        });
        const lines = [
          `NovaCron server listening on ${server.url} (database: ${server.store.db.kind === "pglite" ? `embedded PGlite in ${dataDir}/db` : "PostgreSQL"})`,
          server.created.admin
            ? `Created the admin token: ${server.adminTokenPath} (mode 0600). Log in with: novacron login --server ${server.url} --token-file ${server.adminTokenPath}`
            : `Admin token: ${server.adminTokenPath}`,
          server.created.join
            ? `Created the agent join token: ${server.joinTokenPath} (mode 0600). Start agents with: novacron agent --server ${server.url} --join-token-file ${server.joinTokenPath}`
            : `Agent join token: ${server.joinTokenPath}`,
        ];
        process.stdout.write(`${lines.join("\n")}\n`);
        const signal = await untilSignal();
        process.stderr.write(`${signal}: shutting down the server\n`);
        await server.close();
      },
    );

  program
    .command("agent")
    .description("Run a hypervisor host's agent: runs QEMU VMs for the server")
    .requiredOption("--server <url>", "the server to join, e.g. http://127.0.0.1:7700")
    .option("--join-token <token>", "the server's join token")
    .option("--join-token-file <path>", "read the join token from a file (the server's join.token)")
    .option("--data-dir <dir>", "VM disks, image store, credentials", defaultDataDir("agent"))
    .option("--listen <host:port>", "agent API address", "127.0.0.1:7800")
    .option(
      "--data-address <host>",
      "address for migration traffic (QEMU migration and NBD listeners; default: the --listen host)",
    )
    .option("--name <name>", "host name in the cluster", os.hostname().toLowerCase())
    .option("--dwcp-port <port>", "DWCP migration listener port on the data address (0 = any free port)", "0")
    .option("--no-dwcp", "do not offer DWCP for migrations (QEMU's own transport only)")
    .option("--memory <MiB>", "memory offered to VMs (default: all of this machine's)")
    .option("--vcpus <n>", "vCPUs offered to VMs (default: this machine's)")
    .option("--stop-grace <seconds>", "ACPI shutdown grace before a hard stop", "30")
    .option(
      "--qemu-binary <path>",
      "the qemu-system-x86_64 to run VMs with, 7.2 or newer (default: $NOVACRON_QEMU_BINARY, else qemu-system-x86_64 on PATH)",
    )
    .action(
      async (o: {
        server: string;
        joinToken?: string;
        joinTokenFile?: string;
        dataDir: string;
        listen: string;
        dataAddress?: string;
        dwcpPort: string;
        dwcp: boolean;
        name: string;
        memory?: string;
        vcpus?: string;
        stopGrace: string;
        qemuBinary?: string;
      }) => {
        const joinToken =
          o.joinToken ??
          process.env.NOVACRON_JOIN_TOKEN ??
          (o.joinTokenFile ? (await readFile(o.joinTokenFile, "utf8")).trim() : undefined);
        if (!joinToken)
          throw new NovaError(
            "NOVA_CONFIG",
            "Give the server's join token: --join-token-file <server data dir>/join.token (or --join-token, or NOVACRON_JOIN_TOKEN).",
          );
        const { host, port } = parseListen(o.listen);
        const agent = await startAgent({
          serverUrl: o.server,
          joinToken,
          dataDir: path.resolve(o.dataDir),
          name: o.name,
          host,
          port,
          ...(o.dataAddress ? { dataHost: o.dataAddress } : {}),
          dwcpPort: o.dwcp ? parsePort(o.dwcpPort, "--dwcp-port") : null,
          stopGraceMs: parsePositiveInt(o.stopGrace, "--stop-grace") * 1000,
          ...(o.memory ? { memoryMiB: parsePositiveInt(o.memory, "--memory") } : {}),
          ...(o.vcpus ? { vcpus: parsePositiveInt(o.vcpus, "--vcpus") } : {}),
          ...(o.qemuBinary !== undefined ? { qemuBinary: o.qemuBinary } : {}),
        });
        process.stdout.write(
          `NovaCron agent ${agent.name} serving on ${agent.url}, joined ${o.server} (accelerator: ${agent.accel}; QEMU ${agent.qemu.version} at ${agent.qemu.binary}, q35 = ${agent.qemu.q35Alias})\n`,
        );
        const signal = await untilSignal();
        process.stderr.write(`${signal}: stopping the agent (VMs keep running)\n`);
        await agent.close();
      },
    );
}

function parsePort(v: string, flag: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new NovaError("NOVA_CONFIG", `${flag} must be a port from 0 to 65535, got "${v}"`);
  return n;
}
