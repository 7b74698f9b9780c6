/**
 * How the demo talks: a header per step, and each CLI command echoed with its own output
 * (progress from stderr first, then the result), optionally marked with the cluster it ran
 * against when there are two.
 */
import type { CliResult, LocalCluster } from "./local-cluster.js";

/** Prints a step's header. */
export function say(text: string): void {
  process.stdout.write(`\n== ${text}\n`);
}

/** Runs `novacron ARGS` against `c`, echoes it and its output; throws if it fails. */
export async function show(c: LocalCluster, args: string[], cluster?: string): Promise<CliResult> {
  process.stdout.write(`${cluster ? `[${cluster}] ` : ""}$ novacron ${args.join(" ")}\n`);
  const res = await c.cli(args);
  // Progress goes to stderr while a command runs, its result to stdout at the end.
  process.stdout.write(res.stderr);
  process.stdout.write(res.stdout);
  if (res.code !== 0) throw new Error(`novacron ${args.join(" ")} exited with ${res.code}`);
  return res;
}
