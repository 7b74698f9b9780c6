/**
 * `novacron login`: pins the server's cluster CA (like SSH's known hosts: the fingerprint
 * is shown and must match the one the server printed at its first start), checks the
 * token against the server, then saves URL, token and CA (0600) for later commands.
 */
import { readFile } from "node:fs/promises";
import { createInterface } from "node:readline/promises";
import type { Command } from "commander";
import { NovaError } from "../../lib/errors.js";
import { certInfo } from "../../security/pki.js";
import { fetchPresentedCa } from "../../security/tls-client.js";
import { ApiClient } from "../client.js";
import { configPath, writeConfigFile } from "../config.js";

interface LoginFlags {
  server: string;
  token?: string;
  tokenFile?: string;
  fingerprint?: string;
  caFile?: string;
}

/** Registers `login`. */
export function registerLoginCommand(program: Command): void {
  program
    .command("login")
    .description("Pin the server's CA, check a token, and save both for later commands")
    .requiredOption("--server <url>", "server URL, e.g. https://127.0.0.1:7700")
    .option("--token <token>", "an admin token")
    .option("--token-file <path>", "read the token from a file (e.g. <server data dir>/admin.token)")
    .option(
      "--fingerprint <sha256:hex>",
      "the cluster CA fingerprint the server printed at its first start (skips the question)",
    )
    .option("--ca-file <path>", "trust this CA certificate file (e.g. <server data dir>/pki/ca.crt)")
    .action(async (o: LoginFlags) => {
      const token = o.token ?? (o.tokenFile ? (await readFile(o.tokenFile, "utf8")).trim() : undefined);
      if (!token) throw new NovaError("NOVA_CONFIG", "Give --token or --token-file.");
      const server = o.server.replace(/\/+$/, "");
      const ca = server.startsWith("https://") ? await pinCa(server, o) : undefined;
      await new ApiClient({ server, token, ...(ca ? { ca } : {}) }).get("/v1/hosts");
      await writeConfigFile({ server, token, ...(ca ? { ca } : {}) });
      process.stdout.write(`Logged in to ${server}; saved to ${configPath()}\n`);
    });
}

/** The CA to trust for `server`: from --ca-file, or the one it presents once its fingerprint is confirmed. */
async function pinCa(server: string, o: LoginFlags): Promise<string> {
  if (o.caFile) return readFile(o.caFile, "utf8");
  let presented: string;
  try {
    presented = await fetchPresentedCa(server);
  } catch (err) {
    throw new NovaError(
      "NOVA_HOST_UNREACHABLE",
      `Cannot reach ${server} over TLS: ${(err as Error).message}`,
    );
  }
  const fingerprint = certInfo(presented).fingerprint;
  if (o.fingerprint) {
    const wanted = o.fingerprint
      .toLowerCase()
      .replaceAll(":", "")
      .replace(/^sha256/, "sha256:");
    if (wanted !== fingerprint) {
      throw new NovaError(
        "NOVA_TLS_UNTRUSTED",
        `The server at ${server} presents CA ${fingerprint}, not ${o.fingerprint}. Do not log in: check the URL, or compare with the fingerprint the server printed (novacron server logs it at every start).`,
        { details: { presented: fingerprint, expected: o.fingerprint } },
      );
    }
    return presented;
  }
  if (!process.stdin.isTTY) {
    throw new NovaError(
      "NOVA_TLS_UNTRUSTED",
      `The server at ${server} presents CA ${fingerprint}. Confirm it matches the fingerprint the server printed, then run login again with --fingerprint ${fingerprint} (or --ca-file <server data dir>/pki/ca.crt).`,
      { details: { presented: fingerprint } },
    );
  }
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question(
      `The server's cluster CA has fingerprint\n  ${fingerprint}\nDoes it match the one the server printed? [y/N] `,
    );
    if (!/^y(es)?$/i.test(answer.trim())) {
      throw new NovaError("NOVA_TLS_UNTRUSTED", "Not logged in: the CA fingerprint was not confirmed.");
    }
  } finally {
    rl.close();
  }
  return presented;
}
