/**
 * The `novacron` command (built, as a separate process) against a real server over TLS:
 * the first admin user made with the admin token the server wrote, `login --user` with the
 * password on stdin and a TOTP code, the user's own enrolment, user management, logout,
 * and the refusals a user sees (wrong password, a second factor needed without a
 * terminal, a viewer's write), each with its code in the message and the exit code.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { totpCode } from "../src/security/totp.js";
import { type RunningServer, startServer } from "../src/server/server-process.js";
import { runBuiltCli } from "./helpers/cli-process.js";

describe("novacron user and login --user against a real server", () => {
  let dir: string;
  let server: RunningServer;
  let config: string;
  /** Runs the CLI with `stdin` piped in; no server or token from the environment, only the config file. */
  const cli = (args: string[], stdin = "") => runBuiltCli(config, args, stdin);
  const savedToken = async () => (JSON.parse(await readFile(config, "utf8")) as { token: string }).token;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "nc-users-cli-"));
    config = path.join(dir, "cli.json");
    server = await startServer({
      dataDir: path.join(dir, "server"),
      port: 0,
      execWorkers: false,
      logger: pino({ level: "silent" }),
    });
  });
  afterAll(async () => {
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("creates the first admin user with the server's admin token, then works as that user", async () => {
    const asToken = await cli([
      "login",
      "--server",
      server.url,
      "--token-file",
      server.adminTokenPath,
      "--fingerprint",
      server.caFingerprint,
    ]);
    expect(asToken.code, asToken.stderr).toBe(0);
    const created = await cli(["user", "create", "alice", "--role", "admin"]);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stderr).toContain("one-time password");
    const oneTime = created.stdout.trim();
    expect(oneTime).toMatch(/^[A-Za-z0-9_-]{24}$/);

    const login = await cli(["login", "--user", "alice", "--password-stdin"], `${oneTime}\n`);
    expect(login.code, login.stderr).toBe(0);
    expect(login.stdout).toContain("as alice (admin)");
    expect(await savedToken()).toMatch(/^nvs_/);
    const changed = await cli(
      ["user", "password", "--password-stdin"],
      `${oneTime}\nalice's own passphrase\n`,
    );
    expect(changed.code, changed.stderr).toBe(0);

    const bob = await cli(
      ["user", "create", "bob", "--role", "viewer", "--password-stdin"],
      "bob's long passphrase\n",
    );
    expect(bob.code, bob.stderr).toBe(0);
    expect(bob.stdout).toBe("Created user bob (viewer)\n");
    const list = await cli(["user", "list", "--json"]);
    expect(list.code, list.stderr).toBe(0);
    expect(
      (JSON.parse(list.stdout) as { username: string; role: string }[]).map((u) => `${u.username}:${u.role}`),
    ).toEqual(["alice:admin", "bob:viewer"]);
  });

  it("enrols the logged-in user's authenticator and then asks for a code at login", async () => {
    const enrol = await cli(["user", "mfa", "enrol", "--json"]);
    expect(enrol.code, enrol.stderr).toBe(0);
    const { secret, uri } = JSON.parse(enrol.stdout) as { secret: string; uri: string };
    expect(uri).toContain("otpauth://totp/NovaCron:alice");
    const t = Date.now();
    const confirm = await cli(["user", "mfa", "confirm", totpCode(secret, t)]);
    expect(confirm.code, confirm.stderr).toBe(0);
    expect(confirm.stdout.trim().split("\n")).toHaveLength(10);

    expect((await cli(["logout"])).code).toBe(0);
    expect(await savedToken()).toBe("");
    const noCode = await cli(["login", "--user", "alice", "--password-stdin"], "alice's own passphrase\n");
    expect(noCode.code).toBe(2);
    expect(noCode.stderr).toContain("give --totp or --recovery-code");
    const withCode = await cli(
      ["login", "--user", "alice", "--password-stdin", "--totp", totpCode(secret, t + 30_000)],
      "alice's own passphrase\n",
    );
    expect(withCode.code, withCode.stderr).toBe(0);
    const me = await cli(["user", "show", "alice", "--json"]);
    expect(JSON.parse(me.stdout)).toMatchObject({ username: "alice", mfa: "on" });
  });

  it("says what went wrong: a wrong password, a viewer's write, a bad role", async () => {
    const wrong = await cli(["login", "--user", "bob", "--password-stdin"], "not bob's password\n");
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain("Wrong username or password. [NOVA_LOGIN_FAILED]");
    const bob = await cli(["login", "--user", "bob", "--password-stdin"], "bob's long passphrase\n");
    expect(bob.code, bob.stderr).toBe(0);
    const write = await cli(["host", "join-token", "h1"]);
    expect(write.code).toBe(1);
    expect(write.stderr).toContain(
      "User bob (role viewer) may not do this (needs hosts:write). [NOVA_FORBIDDEN]",
    );
    const users = await cli(["user", "list"]);
    expect(users.code).toBe(1);
    expect(users.stderr).toContain("[NOVA_FORBIDDEN]");
    const role = await cli(["user", "set-role", "bob", "root"]);
    expect(role.code).toBe(2);
    expect(role.stderr).toContain("Unknown role root");
    // bob's saved session idles out: the next command says so and how to log in again.
    await server.store.db.query(
      "UPDATE user_sessions SET last_seen_at = now() - interval '1 hour' FROM users WHERE users.id = user_sessions.user_id AND users.username = 'bob'",
    );
    const expired = await cli(["vm", "list"]);
    expect(expired.code).toBe(1);
    expect(expired.stderr).toMatch(
      /session ended after 30 minutes without use: log in again\. \(novacron login --user bob\) \[NOVA_SESSION_EXPIRED\]/,
    );
  });

  it("manages users as an admin: role, lock-out, password reset, second factor, deletion", async () => {
    const admin = await cli(["login", "--token-file", server.adminTokenPath]);
    expect(admin.code, admin.stderr).toBe(0);
    expect((await cli(["user", "set-role", "bob", "operator"])).stdout).toBe("User bob is now operator\n");
    for (let i = 0; i < 5; i++)
      await cli(["login", "--user", "bob", "--password-stdin", "--server", server.url], "wrong password!\n");
    // Failed logins save nothing: the admin token stays the saved login.
    const locked = JSON.parse((await cli(["user", "show", "bob", "--json"])).stdout) as {
      lockedUntil: string | null;
    };
    expect(locked.lockedUntil).not.toBeNull();
    expect((await cli(["user", "unlock", "bob"])).stdout).toBe("Unlocked user bob\n");
    const reset = await cli(["user", "reset-password", "bob"]);
    expect(reset.code, reset.stderr).toBe(0);
    expect(reset.stdout.trim()).toMatch(/^[A-Za-z0-9_-]{24}$/);
    expect((await cli(["user", "disable-mfa", "alice"])).stdout).toBe("Second factor of alice is off\n");
    expect((await cli(["user", "delete", "bob"])).stdout).toBe("Deleted user bob\n");
    const gone = await cli(["user", "show", "bob"]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain("[NOVA_NOT_FOUND]");
  });
});
