/**
 * `novacron user …`: managing users (an admin's: create, list, show, delete, set-role,
 * reset-password, unlock, disable-mfa) and the logged-in user's own second factor
 * (`user mfa enrol|confirm|disable`) and password (`user password`). Generated passwords
 * and recovery codes go to stdout, once; what they are goes to stderr.
 */
import type { Command } from "commander";
import type {
  MfaConfirmed,
  MfaEnrolment,
  Role,
  SessionInfo,
  User,
  UserList,
  UserWithPassword,
} from "../../api/types/users.js";
import { ROLES } from "../../api/types/users.js";
import { NovaError } from "../../lib/errors.js";
import { seg } from "../client.js";
import { apiFor } from "../context.js";
import { printFields, printJson, printTable } from "../output.js";
import { promptLine, promptSecret, readStdinLine } from "../prompt.js";

/** Checks a role argument (NOVA_CONFIG, exit 2, naming the roles otherwise). */
export function parseRole(value: string): Role {
  if (!(ROLES as readonly string[]).includes(value))
    throw new NovaError("NOVA_CONFIG", `Unknown role ${value}: use one of ${ROLES.join(", ")}.`);
  return value as Role;
}

function printUser(u: User): void {
  printFields([
    ["Username", u.username],
    ["ID", u.id],
    ["Role", u.role],
    ["MFA", u.mfa],
    ["Locked until", u.lockedUntil],
    ["Failed attempts", u.failedAttempts],
    ["Last login", u.lastLoginAt],
    ["Password changed", u.passwordChangedAt],
    ["Created", u.createdAt],
  ]);
}

/** A password from --password-stdin, or undefined (the server generates one). */
async function passwordFromStdin(o: { passwordStdin?: boolean }): Promise<string | undefined> {
  return o.passwordStdin ? readStdinLine("password") : undefined;
}

/** Prints a created user or a reset, with the generated password when there is one. */
function printWithPassword(r: UserWithPassword, what: string, json: boolean): void {
  if (json) printJson(r);
  else if (r.password) {
    process.stderr.write(
      `${what} ${r.user.username} (${r.user.role}). Their one-time password, shown only now (they change it with: novacron user password):\n`,
    );
    process.stdout.write(`${r.password}\n`);
  } else process.stdout.write(`${what} ${r.user.username} (${r.user.role})\n`);
}

/** Registers `user`. */
export function registerUserCommands(program: Command): void {
  const user = program
    .command("user")
    .description("Manage users (admins), and your own second factor and password (any user)");

  user
    .command("create <name>")
    .description("Create a user; prints a one-time password unless --password-stdin gives one")
    .requiredOption("--role <role>", `the user's role: ${ROLES.join(", ")}`)
    .option("--password-stdin", "read the initial password from the first line of standard input")
    .action(async (name: string, o: { role: string; passwordStdin?: boolean }, cmd: Command) => {
      const role = parseRole(o.role);
      const password = await passwordFromStdin(o);
      const { api, json } = await apiFor(cmd);
      const r = await api.post<UserWithPassword>("/v1/users", {
        username: name,
        role,
        ...(password ? { password } : {}),
      });
      printWithPassword(r, "Created user", json);
    });

  user
    .command("list")
    .description("List users: role, second factor, lock-out, last login")
    .action(async (_o: unknown, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const { users } = await api.get<UserList>("/v1/users");
      if (json) return printJson(users);
      printTable(
        ["USERNAME", "ROLE", "MFA", "LOCKED UNTIL", "FAILED", "LAST LOGIN"],
        users.map((u) => [u.username, u.role, u.mfa, u.lockedUntil, u.failedAttempts, u.lastLoginAt]),
      );
    });

  user
    .command("show <name>")
    .description("Show one user")
    .action(async (name: string, _o: unknown, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const u = await api.get<User>(`/v1/users/${seg(name)}`);
      if (json) return printJson(u);
      printUser(u);
    });

  user
    .command("delete <name>")
    .description("Delete a user; their sessions end at once")
    .action(async (name: string, _o: unknown, cmd: Command) => {
      const { api } = await apiFor(cmd);
      await api.delete(`/v1/users/${seg(name)}`);
      process.stdout.write(`Deleted user ${name}\n`);
    });

  user
    .command("set-role <name> <role>")
    .description(`Change a user's role (${ROLES.join(", ")}); it applies to their next request`)
    .action(async (name: string, roleArg: string, _o: unknown, cmd: Command) => {
      const role = parseRole(roleArg);
      const { api, json } = await apiFor(cmd);
      const u = await api.post<User>(`/v1/users/${seg(name)}/role`, { role });
      if (json) return printJson(u);
      process.stdout.write(`User ${u.username} is now ${u.role}\n`);
    });

  user
    .command("reset-password <name>")
    .description(
      "Set a new password for a user (printed once unless --password-stdin gives it); their sessions end",
    )
    .option("--password-stdin", "read the new password from the first line of standard input")
    .action(async (name: string, o: { passwordStdin?: boolean }, cmd: Command) => {
      const password = await passwordFromStdin(o);
      const { api, json } = await apiFor(cmd);
      const r = await api.post<UserWithPassword>(
        `/v1/users/${seg(name)}/password`,
        password ? { password } : {},
      );
      printWithPassword(r, "Reset the password of", json);
    });

  user
    .command("unlock <name>")
    .description("Lift a user's lock-out after repeated failed logins")
    .action(async (name: string, _o: unknown, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const u = await api.post<User>(`/v1/users/${seg(name)}/unlock`);
      if (json) return printJson(u);
      process.stdout.write(`Unlocked user ${u.username}\n`);
    });

  user
    .command("disable-mfa <name>")
    .description("Turn a user's second factor off (e.g. a lost phone and lost recovery codes)")
    .action(async (name: string, _o: unknown, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const u = await api.delete<User>(`/v1/users/${seg(name)}/mfa`);
      if (json) return printJson(u);
      process.stdout.write(`Second factor of ${u.username} is off\n`);
    });

  user
    .command("password")
    .description(
      "Change your own password (when logged in with novacron login --user); your other sessions end",
    )
    .option(
      "--password-stdin",
      "read the current and the new password from the first two lines of standard input",
    )
    .action(async (o: { passwordStdin?: boolean }, cmd: Command) => {
      let current: string;
      let next: string;
      if (o.passwordStdin) {
        const lines = (await readStdinLines(2)).map((l) => l.trim());
        [current, next] = [lines[0] ?? "", lines[1] ?? ""];
      } else {
        current = await promptSecret("Current password: ", "--password-stdin");
        next = await promptSecret("New password: ", "--password-stdin");
        if ((await promptSecret("New password again: ", "--password-stdin")) !== next)
          throw new NovaError("NOVA_CONFIG", "The two new passwords differ; nothing was changed.");
      }
      const { api, json } = await apiFor(cmd);
      const r = await api.post<SessionInfo>("/v1/session/password", {
        currentPassword: current,
        newPassword: next,
      });
      if (json) return printJson(r);
      process.stdout.write(`Changed the password of ${r.principal.name}\n`);
    });

  const mfa = user
    .command("mfa")
    .description("Your own TOTP second factor (when logged in with novacron login --user)");

  mfa
    .command("enrol")
    .description("Start enrolling an authenticator app: prints the secret and the otpauth:// URI")
    .action(async (_o: unknown, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const e = await api.post<MfaEnrolment>("/v1/session/mfa");
      if (json) return printJson(e);
      process.stdout.write(
        `Add this to your authenticator app (type the secret, or turn the URI into a QR code):\n  secret: ${e.secret}\n  uri:    ${e.uri}\nThen confirm with the code it shows: novacron user mfa confirm CODE\n`,
      );
    });

  mfa
    .command("confirm <code>")
    .description("Confirm the enrolment with a code from the app; prints ten one-time recovery codes")
    .action(async (code: string, _o: unknown, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const r = await api.post<MfaConfirmed>("/v1/session/mfa/confirm", { totp: code });
      if (json) return printJson(r);
      process.stderr.write(
        "Second factor on. Your recovery codes, each good once, shown only now: keep them apart from your phone.\n",
      );
      process.stdout.write(`${r.recoveryCodes.join("\n")}\n`);
    });

  mfa
    .command("disable")
    .description("Turn your second factor off (needs a current code, or a recovery code)")
    .option("--code <code>", "the authenticator app's current code (asked for when neither is given)")
    .option("--recovery-code <code>", "one of your recovery codes instead")
    .action(async (o: { code?: string; recoveryCode?: string }, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const me = await api.get<SessionInfo>("/v1/session");
      let proof: { totp?: string; recoveryCode?: string } = {};
      if (o.recoveryCode) proof = { recoveryCode: o.recoveryCode };
      else if (o.code) proof = { totp: o.code };
      else if (me.mfa === "on") proof = { totp: await promptLine("Authentication code: ", "--code") };
      const r = await api.post<SessionInfo>("/v1/session/mfa/disable", proof);
      if (json) return printJson(r);
      process.stdout.write(`Second factor of ${r.principal.name} is off\n`);
    });
}

/** The first `n` lines of standard input. */
async function readStdinLines(n: number): Promise<string[]> {
  let text = "";
  for await (const chunk of process.stdin) {
    text += (chunk as Buffer).toString("utf8");
    if (text.split("\n").length > n || text.length > 8192) break;
  }
  return text.split(/\r?\n/).slice(0, n);
}
