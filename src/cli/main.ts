/**
 * The `novacron` command: daemons (server, agent), login, and the resource commands.
 * Errors end the process with one line and an exit code (output.ts EXIT).
 */
import { Command, CommanderError } from "commander";
import { inSpan, tracingConfigured } from "../lib/tracing.js";
import { VERSION } from "../version.js";
import { registerAlertCommands } from "./commands/alerts.js";
import { registerClusterCommands } from "./commands/clusters.js";
import { type LoadDaemonLauncher, registerDaemonCommands } from "./commands/daemons.js";
import { registerDlqCommands } from "./commands/dlq.js";
import { registerExecCommands } from "./commands/exec.js";
import { registerHostCommands } from "./commands/hosts.js";
import { registerImageCommands } from "./commands/images.js";
import { registerLoginCommand, registerLogoutCommand } from "./commands/login.js";
import { registerMetricsCommands } from "./commands/metrics.js";
import { registerMigrationCommands } from "./commands/migrations.js";
import { registerPlacementCommands } from "./commands/placement.js";
import { registerRebalancerCommands } from "./commands/rebalancer.js";
import { registerStorageCommands } from "./commands/storage-pools.js";
import { registerTokenCommands } from "./commands/tokens.js";
import { registerUserCommands } from "./commands/users.js";
import { registerVmCommands } from "./commands/vms.js";
import { addClientOptions } from "./context.js";
import { EXIT, exitFor } from "./output.js";

/** What the entry point hands the CLI (the daemons' launcher lives outside the CLI). */
export interface CliDeps {
  loadDaemons?: LoadDaemonLauncher;
}

/** Builds the command tree. */
export function buildProgram(deps: CliDeps = {}): Command {
  const program = new Command("novacron")
    .description("NovaCron: run and operate QEMU virtual machines across hosts")
    .version(VERSION)
    .showHelpAfterError()
    .exitOverride();
  registerDaemonCommands(program, deps.loadDaemons);
  registerLoginCommand(program);
  registerLogoutCommand(program);
  registerHostCommands(program);
  registerImageCommands(program);
  registerVmCommands(program);
  registerStorageCommands(program);
  registerMigrationCommands(program);
  registerPlacementCommands(program);
  registerExecCommands(program);
  registerDlqCommands(program);
  registerTokenCommands(program);
  registerUserCommands(program);
  registerClusterCommands(program);
  registerMetricsCommands(program);
  registerAlertCommands(program);
  registerRebalancerCommands(program);
  for (const cmd of program.commands) {
    cmd.exitOverride();
    for (const sub of cmd.commands) {
      sub.exitOverride();
      // Resource commands talk to a server: each takes the client options itself, so
      // they may come anywhere after the command (`novacron vm list --json`).
      if (
        [
          "host",
          "image",
          "vm",
          "migration",
          "exec",
          "dlq",
          "token",
          "cluster",
          "user",
          "metrics",
          "alert",
          "rebalancer",
          "placement",
        ].includes(cmd.name()) &&
        sub.commands.length === 0
      )
        addClientOptions(sub);
      for (const leaf of sub.commands) {
        leaf.exitOverride();
        if (["exec", "cluster", "user", "placement", "storage"].includes(cmd.name())) addClientOptions(leaf);
      }
    }
  }
  return program;
}

/** Runs the CLI with `argv`; returns the exit code. */
export async function runCli(argv: string[], deps: CliDeps = {}): Promise<number> {
  // The daemons trace as themselves (daemons/launch.ts); a client command is a trace's root.
  const daemon = ["server", "agent"].includes(argv[2] ?? "");
  if (daemon || !tracingConfigured()) return runProgram(argv, deps);
  // Loaded only when asked for: most invocations never pay for the SDK.
  const { startTracing } = await import("../lib/tracing-sdk.js");
  const tracing = startTracing({ serviceName: "novacron-cli", version: VERSION });
  try {
    return await inSpan("novacron", undefined, async (span) => {
      const program = buildProgram(deps);
      program.hook("preAction", (_root, action) => {
        const path: string[] = [];
        for (let c: Command | null = action; c; c = c.parent) path.unshift(c.name());
        span.updateName(path.join(" "));
      });
      const code = await runProgram(argv, deps, program);
      if (code !== EXIT.ok) span.setStatus({ code: 2, message: `exit code ${code}` });
      return code;
    });
  } finally {
    await tracing.shutdown().catch(() => {});
  }
}

async function runProgram(argv: string[], deps: CliDeps, program = buildProgram(deps)): Promise<number> {
  try {
    await program.parseAsync(argv);
    return EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version "errors" are successes; usage errors were already printed.
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    const { message, code } = exitFor(err);
    process.stderr.write(`novacron: ${message}\n`);
    return code;
  }
}
