/**
 * `novacron login`: pins the server's cluster CA (like SSH's known hosts: the fingerprint
 * is shown and must match the one the server printed at its first start), checks the
 * token against the server, then saves URL, token and CA (0600) for later commands.
 * `login --user NAME` logs a user in instead (password, and a TOTP or recovery code when
 * the account has a second factor) and saves the session's bearer token, which ends like
 * the console's session does (idle timeout, lifetime, logout). `novacron logout` ends it.
 */
import { readFile } from "node:fs/promises";
import { createInterface } from "node:readline/promises";
import type { Command } from "commander";
import type { SessionInfo } from "../../api/types/users.js";
import { isNovaError, NovaError } from "../../lib/errors.js";
import { certInfo } from "../../security/pki.js";
import { fetchPresentedCa } from "../../security/tls-client.js";
import { ApiClient } from "../client.js";
import { configPath, readConfigFile, writeConfigFile } from "../config.js";
import { promptLine, promptSecret, readStdinLine } from "../prompt.js";
import { needsCa, normalizeServerList, parseServerList, pinnedFor } from "../server-urls.js";

interface LoginFlags {
  server?: string;
  token?: string;
  tokenFile?: string;
  fingerprint?: string;
  caFile?: string;
  user?: string;
  passwordStdin?: boolean;
  totp?: string;
  recoveryCode?: string;
}

/** Registers `login`. */
export function registerLoginCommand(program: Command): void {
  program
    .command("login")
    .description("Pin the server's CA, check a token (or log a user in), and save both for later commands")
    .option(
      "--server <url>",
      "server URL, e.g. https://127.0.0.1:7700, or the replicas' URLs separated by commas (default: the one logged in to before)",
    )
    .option("--token <token>", "an admin token")
    .option("--token-file <path>", "read the token from a file (e.g. <server data dir>/admin.token)")
    .option(
      "--fingerprint <sha256:hex>",
      "the cluster CA fingerprint the server printed at its first start (skips the question)",
    )
    .option("--ca-file <path>", "trust this CA certificate file (e.g. <server data dir>/pki/ca.crt)")
    .option("--user <name>", "log in as this user (asks for the password, and a code when needed)")
    .option("--password-stdin", "with --user: read the password from the first line of standard input")
    .option("--totp <code>", "with --user: the authenticator app's current code (asked for when needed)")
    .option("--recovery-code <code>", "with --user: one of your recovery codes, instead of --totp")
    .action(async (o: LoginFlags) => {
      const saved = await readConfigFile();
      const given = o.server ?? saved?.server;
      if (!given) throw new NovaError("NOVA_CONFIG", "Give --server https://HOST:PORT.");
      const server = normalizeServerList(given);
      // A server logged in to before keeps the CA pinned then, unless another is given.
      const ca = !needsCa(server)
        ? undefined
        : !o.caFile && !o.fingerprint && saved?.server && pinnedFor(server, saved.server) && saved.ca
          ? saved.ca
          : await pinCa(server, o);
      if (o.user) return loginUser(server, ca, o.user, o);
      const token = o.token ?? (o.tokenFile ? (await readFile(o.tokenFile, "utf8")).trim() : undefined);
      if (!token) throw new NovaError("NOVA_CONFIG", "Give --token, --token-file or --user.");
      await new ApiClient({ server, token, ...(ca ? { ca } : {}) }).get("/v1/hosts");
      await writeConfigFile({ server, token, ...(ca ? { ca } : {}) });
      process.stdout.write(`Logged in to ${server}; saved to ${configPath()}\n`);
    });
}

/** Logs `username` in (a second factor asked for when the server wants one) and saves the session's token. */
async function loginUser(
  server: string,
  ca: string | undefined,
  username: string,
  o: LoginFlags,
): Promise<void> {
  const password = o.passwordStdin
    ? await readStdinLine("password")
    : await promptSecret(`Password for ${username}: `, "--password-stdin");
  const api = new ApiClient({ server, token: "", ...(ca ? { ca } : {}) });
  const attempt = (factor: { totp?: string; recoveryCode?: string }) =>
    api.post<SessionInfo>("/v1/session", { username, password, delivery: "token", ...factor });
  const given = o.recoveryCode ? { recoveryCode: o.recoveryCode } : o.totp ? { totp: o.totp } : {};
  let session: SessionInfo;
  try {
    session = await attempt(given);
  } catch (err) {
    if (!isNovaError(err, "NOVA_MFA_REQUIRED")) throw err;
    const code = await promptLine("Authentication code (or a recovery code): ", "--totp or --recovery-code");
    session = await attempt(
      /^\d{6}$/.test(code.replace(/\s/g, "")) ? { totp: code } : { recoveryCode: code },
    );
  }
  if (!session.token)
    throw new NovaError("NOVA_INTERNAL", "The server answered the login without a session token.");
  await writeConfigFile({ server, token: session.token, user: username, ...(ca ? { ca } : {}) });
  const ends = session.session
    ? `; the session ends at ${session.session.expiresAt}, or sooner after a while unused (novacron logout ends it now)`
    : "";
  process.stdout.write(
    `Logged in to ${server} as ${username} (${session.principal.role ?? session.principal.kind})${ends}; saved to ${configPath()}\n`,
  );
}

/** Registers `logout`: ends a user's session (login --user) and forgets the saved token. */
export function registerLogoutCommand(program: Command): void {
  program
    .command("logout")
    .description("End your session (after login --user) and forget the saved token")
    .action(async () => {
      const saved = await readConfigFile();
      if (!saved?.server || !saved.token) {
        process.stdout.write("Not logged in.\n");
        return;
      }
      if (saved.token.startsWith("nvs_")) {
        try {
          await new ApiClient({
            server: saved.server,
            token: saved.token,
            ...(saved.ca ? { ca: saved.ca } : {}),
          }).delete("/v1/session");
        } catch (err) {
          // A session that already ended is as logged out as can be.
          if (!isNovaError(err, "NOVA_UNAUTHENTICATED") && !isNovaError(err, "NOVA_SESSION_EXPIRED"))
            throw err;
        }
      }
      await writeConfigFile({ server: saved.server, token: "", ...(saved.ca ? { ca: saved.ca } : {}) });
      process.stdout.write(`Logged out of ${saved.server}${saved.user ? ` (${saved.user})` : ""}\n`);
    });
}

/**
 * The CA to trust for `server`: from --ca-file, or the one it presents once its fingerprint
 * is confirmed. Of several replicas the first that answers presents it; they share the
 * cluster's CA, and the check against the API that follows trusts only that one.
 */
async function pinCa(servers: string, o: LoginFlags): Promise<string> {
  if (o.caFile) return readFile(o.caFile, "utf8");
  let presented: string | undefined;
  let server = servers;
  const missed: string[] = [];
  for (const url of parseServerList(servers).filter((u) => u.startsWith("https://"))) {
    try {
      presented = await fetchPresentedCa(url);
      server = url;
      break;
    } catch (err) {
      missed.push(`${url} over TLS: ${(err as Error).message}`);
    }
  }
  if (presented === undefined)
    throw new NovaError("NOVA_HOST_UNREACHABLE", `Cannot reach ${missed.join("; ")}`);
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
