/**
 * CLI configuration: server URL, token and the pinned cluster CA from flags, then
 * environment (NOVACRON_SERVER, NOVACRON_TOKEN, NOVACRON_CA_FILE), then the config file
 * written by `novacron login` ($NOVACRON_CONFIG or ~/.config/novacron/config.json, mode
 * 0600). The CA pinned at login is the only one the CLI trusts for that server.
 */
import { chmod, mkdir, open, readFile, rename, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { NovaError } from "../lib/errors.js";
import { normalizeServerList, pinnedFor } from "./server-urls.js";

/** What the CLI needs to reach a server. */
export interface CliConfig {
  /** The server's URL, or its replicas' URLs separated by commas (server-urls.ts). */
  server: string;
  /** An API token, or a user's session token (`nvs_…`) from `novacron login --user`. */
  token: string;
  /** The user the token's session belongs to (login --user), for messages. */
  user?: string;
  /** The cluster CA, PEM, pinned at login (needed for https:// servers). */
  ca?: string;
}

/** The config file's path. */
export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  return (
    env.NOVACRON_CONFIG ??
    path.join(env.XDG_CONFIG_HOME ?? path.join(os.homedir(), ".config"), "novacron", "config.json")
  );
}

/** Reads the config file; undefined when there is none. */
export async function readConfigFile(file = configPath()): Promise<Partial<CliConfig> | undefined> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  try {
    return JSON.parse(text) as Partial<CliConfig>;
  } catch {
    throw new NovaError(
      "NOVA_CONFIG",
      `Config file ${file} is not valid JSON. Fix it or run novacron login again.`,
    );
  }
}

/**
 * Writes the config file atomically with mode 0600. A stale `<file>.tmp` (left by an
 * interrupted write, possibly with a wider mode, or a symlink) is removed first and the
 * temp file is created afresh and exclusively, then chmod-ed to 0600 whatever the umask,
 * so the token never lands in a file others can read.
 */
export async function writeConfigFile(config: CliConfig, file = configPath()): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp`;
  await rm(tmp, { force: true });
  const fh = await open(tmp, "wx", 0o600);
  try {
    await fh.chmod(0o600);
    await fh.writeFile(`${JSON.stringify(config, null, 2)}\n`);
    await fh.sync();
  } catch (err) {
    await fh.close();
    await rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  await rename(tmp, file);
  await chmod(file, 0o600);
}

/** Resolves server and token: flags over environment over config file. */
export async function resolveConfig(
  flags: { server?: string; token?: string; caFile?: string },
  env: NodeJS.ProcessEnv = process.env,
): Promise<CliConfig> {
  const file = await readConfigFile(configPath(env));
  const given = flags.server ?? env.NOVACRON_SERVER ?? file?.server;
  const server = given === undefined ? undefined : normalizeServerList(given);
  const token = flags.token ?? env.NOVACRON_TOKEN ?? file?.token;
  const caFile = flags.caFile ?? env.NOVACRON_CA_FILE;
  // The saved CA and user belong to the servers logged in to.
  const saved = server !== undefined && file?.server !== undefined && pinnedFor(server, file.server);
  let ca = saved ? file?.ca : undefined;
  if (caFile) {
    try {
      ca = await readFile(caFile, "utf8");
    } catch (err) {
      throw new NovaError("NOVA_CONFIG", `Cannot read the CA file ${caFile}: ${(err as Error).message}`);
    }
  }
  if (!server || !token) {
    const missing = [!server && "server URL", !token && "token"].filter(Boolean).join(" and ");
    throw new NovaError(
      "NOVA_CONFIG",
      `No ${missing} configured. Run: novacron login --server https://127.0.0.1:7700 --token-file <server data dir>/admin.token (or set NOVACRON_SERVER / NOVACRON_TOKEN).`,
    );
  }
  // The user a saved session belongs to, for the "log in again" hint when it ends.
  const user = saved && token === file?.token ? file?.user : undefined;
  return { server, token, ...(ca ? { ca } : {}), ...(user ? { user } : {}) };
}
