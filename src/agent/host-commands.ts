/**
 * Allowlisted host commands (the execution system's `host.command` step). The agent's
 * operator lists, in `<data dir>/host-commands.json`, the commands the server may ask for:
 *
 *   { "commands": { "restart-nginx": { "argv": ["/usr/bin/systemctl", "restart", "nginx"] },
 *                   "echo": { "argv": ["/bin/echo"], "argPattern": "^[a-z0-9 ._-]*$", "timeoutSeconds": 10 } } }
 *
 * The server sends only a name and arguments; arguments are refused unless the entry has
 * an `argPattern` every argument matches. Commands run without a shell, with a time limit,
 * and are killed when the server's request goes away (cancel).
 */
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import type { AgentCommandResult } from "../api/types/executions.js";
import { describeError, NovaError } from "../lib/errors.js";
import { truncate } from "../lib/truncate.js";

/** One allowlisted command. */
export interface AllowedCommand {
  argv: string[];
  /** Every extra argument must match this; none are accepted without it. */
  argPattern?: string;
  /** @defaultValue 60 */
  timeoutSeconds?: number;
}

const OUTPUT_LIMIT = 256 * 1024;

/** Reads the allowlist; an absent file allows nothing. */
export async function loadAllowlist(file: string): Promise<Record<string, AllowedCommand>> {
  let raw: string;
  try {
    raw = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return {};
    throw new NovaError(
      "NOVA_CONFIG",
      `Failed reading the host command allowlist ${file}: ${describeError(err)}`,
    );
  }
  let parsed: { commands?: Record<string, AllowedCommand> };
  try {
    parsed = JSON.parse(raw) as typeof parsed;
  } catch (err) {
    throw new NovaError(
      "NOVA_CONFIG",
      `Host command allowlist ${file} is not valid JSON: ${describeError(err)}`,
    );
  }
  const commands = parsed.commands ?? {};
  if (typeof commands !== "object" || commands === null || Array.isArray(commands)) {
    throw new NovaError("NOVA_CONFIG", `Host command allowlist ${file} needs "commands" to be an object`);
  }
  for (const [name, c] of Object.entries(commands)) {
    if (
      typeof c !== "object" ||
      c === null ||
      !Array.isArray(c.argv) ||
      c.argv.length === 0 ||
      !c.argv.every((a) => typeof a === "string")
    ) {
      throw new NovaError(
        "NOVA_CONFIG",
        `Host command ${name} in ${file} needs a non-empty "argv" list of strings`,
      );
    }
  }
  return commands;
}

/** Runs `name` with `args` if the allowlist in `file` allows it. */
export async function runAllowedCommand(
  file: string,
  name: string,
  args: string[],
  signal: AbortSignal,
): Promise<AgentCommandResult> {
  // Own entries only: a name such as `constructor` or `__proto__` must not reach
  // Object.prototype (it would "allow" a function and fail with a 500).
  const commands = await loadAllowlist(file);
  const allowed = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (!allowed) {
    throw new NovaError(
      "NOVA_COMMAND_NOT_ALLOWED",
      `Command ${name} is not in this host's allowlist (${file}). Add it there to allow it.`,
      { details: { command: name } },
    );
  }
  if (args.length > 0) {
    const pattern = allowed.argPattern ? new RegExp(allowed.argPattern) : undefined;
    const bad = args.find((a) => !pattern?.test(a));
    if (bad !== undefined) {
      throw new NovaError(
        "NOVA_COMMAND_NOT_ALLOWED",
        pattern
          ? `Argument ${JSON.stringify(bad)} of command ${name} does not match its argPattern ${allowed.argPattern}.`
          : `Command ${name} takes no arguments here (its allowlist entry has no argPattern).`,
        { details: { command: name } },
      );
    }
  }
  const timeoutMs = (allowed.timeoutSeconds ?? 60) * 1000;
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(allowed.argv[0]!, [...allowed.argv.slice(1), ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
      killSignal: "SIGKILL",
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => {
      // Kept while not over the limit, so output beyond it always leaves the text longer
      // than the limit and `truncate` marks the cut.
      if (stdout.length <= OUTPUT_LIMIT) stdout += c.toString();
    });
    child.stderr.on("data", (c: Buffer) => {
      if (stderr.length <= OUTPUT_LIMIT) stderr += c.toString();
    });
    child.on("error", (err) => {
      if ((err as NodeJS.ErrnoException).code === "ABORT_ERR") return; // reported by 'close'
      reject(new NovaError("NOVA_AGENT_ERROR", `Failed starting command ${name}: ${describeError(err)}`));
    });
    child.on("close", (code, sig) => {
      resolve({
        exitCode: code ?? -1,
        signal: sig,
        // Marked cuts: the server's masker hides a secret cut at the limit (this agent
        // does not know the execution's secrets).
        stdout: truncate(stdout, OUTPUT_LIMIT),
        stderr: truncate(stderr, OUTPUT_LIMIT),
        durationMs: Date.now() - started,
      });
    });
  });
}
