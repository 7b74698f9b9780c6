/** What every CLI command gets: global options, a lazily configured API client, output mode. */
import type { Command } from "commander";
import { ApiClient } from "./client.js";
import { resolveConfig } from "./config.js";

/** Options of every command that calls the API. */
export interface GlobalOptions {
  server?: string;
  token?: string;
  caFile?: string;
  json?: boolean;
}

/** Adds --server, --token and --json to a command that calls the API. */
export function addClientOptions(cmd: Command): void {
  cmd
    .option("--server <url>", "server URL (default: $NOVACRON_SERVER, else the login config)")
    .option("--token <token>", "API token (default: $NOVACRON_TOKEN, else the login config)")
    .option(
      "--ca-file <path>",
      "trust this cluster CA (default: $NOVACRON_CA_FILE, else the one pinned at login)",
    )
    .option("--json", "machine-readable output");
}

/** Builds the client from the command's client options. */
export async function apiFor(cmd: Command): Promise<{ api: ApiClient; json: boolean }> {
  const g = cmd.opts<GlobalOptions>();
  const config = await resolveConfig({
    ...(g.server ? { server: g.server } : {}),
    ...(g.token ? { token: g.token } : {}),
    ...(g.caFile ? { caFile: g.caFile } : {}),
  });
  return { api: new ApiClient(config), json: Boolean(g.json) };
}
