/**
 * The `novacron` command: daemons (server, agent), login, and the resource commands.
 * Errors end the process with one line and an exit code (output.ts EXIT).
 */
import { Command, CommanderError } from "commander";
import { VERSION } from "../version.js";
import { registerClusterCommands } from "./commands/clusters.js";
import { type LoadDaemonLauncher, registerDaemonCommands } from "./commands/daemons.js";
import { registerDlqCommands } from "./commands/dlq.js";
import { registerExecCommands } from "./commands/exec.js";
import { registerHostCommands } from "./commands/hosts.js";
import { registerImageCommands } from "./commands/images.js";
import { registerLoginCommand } from "./commands/login.js";
import { registerMetricsCommands } from "./commands/metrics.js";
import { registerMigrationCommands } from "./commands/migrations.js";
import { registerTokenCommands } from "./commands/tokens.js";
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
  registerHostCommands(program);
  registerImageCommands(program);
  registerVmCommands(program);
  registerMigrationCommands(program);
  registerExecCommands(program);
  registerDlqCommands(program);
  registerTokenCommands(program);
  registerClusterCommands(program);
  registerMetricsCommands(program);
  for (const cmd of program.commands) {
    cmd.exitOverride();
    for (const sub of cmd.commands) {
      sub.exitOverride();
      // Resource commands talk to a server: each takes the client options itself, so
      // they may come anywhere after the command (`novacron vm list --json`).
      if (
        ["host", "image", "vm", "migration", "exec", "dlq", "token", "cluster", "metrics"].includes(
          cmd.name(),
        ) &&
        sub.commands.length === 0
      )
        addClientOptions(sub);
      for (const leaf of sub.commands) {
        leaf.exitOverride();
        if (["exec", "cluster"].includes(cmd.name())) addClientOptions(leaf);
      }
    }
  }
  return program;
}

/** Runs the CLI with `argv`; returns the exit code. */
export async function runCli(argv: string[], deps: CliDeps = {}): Promise<number> {
  try {
    await buildProgram(deps).parseAsync(argv);
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
