/** `novacron login`: checks a server URL and token, then saves them for later commands. */
import { readFile } from "node:fs/promises";
import type { Command } from "commander";
import { NovaError } from "../../lib/errors.js";
import { ApiClient } from "../client.js";
import { configPath, writeConfigFile } from "../config.js";

/** Registers `login`. */
export function registerLoginCommand(program: Command): void {
  program
    .command("login")
    .description("Save a server URL and token for later commands (checked against the server first)")
    .requiredOption("--server <url>", "server URL, e.g. http://127.0.0.1:7700")
    .option("--token <token>", "an admin token")
    .option("--token-file <path>", "read the token from a file (e.g. <server data dir>/admin.token)")
    .action(async (o: { server: string; token?: string; tokenFile?: string }) => {
      const token = o.token ?? (o.tokenFile ? (await readFile(o.tokenFile, "utf8")).trim() : undefined);
      if (!token) throw new NovaError("NOVA_CONFIG", "Give --token or --token-file.");
      const server = o.server.replace(/\/+$/, "");
      await new ApiClient({ server, token }).get("/v1/hosts");
      await writeConfigFile({ server, token });
      process.stdout.write(`Logged in to ${server}; saved to ${configPath()}\n`);
    });
}
