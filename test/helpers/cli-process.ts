/** The built `novacron` command run as a separate process, as an operator runs it. */
import { execFile } from "node:child_process";
import path from "node:path";

const BIN = path.join(import.meta.dirname, "..", "..", "bin", "novacron.js");

/** What a run printed and its exit code. */
export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `novacron ...args` with `stdin` piped in; server, token and CA come only from the
 * config file `config` (and the flags), never from this process's environment.
 */
export function runBuiltCli(config: string, args: string[], stdin = ""): Promise<CliRun> {
  return new Promise((resolve) => {
    const env: NodeJS.ProcessEnv = { ...process.env, NOVACRON_CONFIG: config };
    delete env.NOVACRON_SERVER;
    delete env.NOVACRON_TOKEN;
    delete env.NOVACRON_CA_FILE;
    const child = execFile(
      process.execPath,
      [BIN, ...args],
      { env, timeout: 60_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr }),
    );
    child.stdin?.end(stdin);
  });
}
