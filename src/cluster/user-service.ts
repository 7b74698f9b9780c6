/**
 * Users and their logins: what a login needs (password, then the second factor when it
 * is on), the lock-out after repeated failures, login sessions (start, resolve, end),
 * TOTP enrolment with recovery codes, and managing users. Secrets are handled by the
 * security/ modules (scrypt, TOTP, recovery codes); rows by store/users.ts and
 * store/user-sessions.ts. The API's routes call this; they check permissions first.
 */
import type { Role, User } from "../api/types/users.js";
import { NovaError } from "../lib/errors.js";
import {
  assertAcceptablePassword,
  decoyHash,
  generatePassword,
  hashPassword,
  needsRehash,
  verifyPassword,
} from "../security/password-hash.js";
import { hashRecoveryCode, newRecoveryCodes } from "../security/recovery-codes.js";
import { isSealedText, type SecretKey } from "../security/secret-key.js";
import { matchTotp, newTotpSecret, totpUri } from "../security/totp.js";
import type { Store } from "./store/store.js";
import {
  createSession,
  deleteSession,
  deleteUserSessions,
  findSession,
  pruneSessions,
  type SessionLimits,
  type SessionRow,
  touchSession,
  trimUserSessions,
} from "./store/user-sessions.js";
import {
  acceptTotpStep,
  beginMfaEnrolment,
  confirmMfaEnrolment,
  deleteUser,
  disableMfa,
  findUserByName,
  getUserByName,
  insertUser,
  listUsers,
  publicUser,
  recordFailedAttempt,
  recordLogin,
  replaceTotpSecret,
  setPasswordHash,
  setUserRole,
  spendRecoveryCode,
  type UserRow,
  unlockUser,
  usersWithClearTotpSecrets,
} from "./store/users.js";

/** How logins are bounded and how long sessions last. */
export interface UserSecurityConfig {
  /** Failed password or second-factor attempts that lock an account. @defaultValue 5 */
  maxFailures: number;
  /** How long a lock-out lasts (and how long failures are remembered). @defaultValue 900000 (15 min) */
  lockoutMs: number;
  /** Sessions end this long after login. @defaultValue 43200000 (12 h) */
  sessionLifetimeMs: number;
  /** Sessions end after this long without a request. @defaultValue 1800000 (30 min) */
  sessionIdleTimeoutMs: number;
  /** Password hashes run at once (each holds 32 MiB and a core for 0.2 s). @defaultValue 2 */
  concurrentHashes: number;
  /** Hashes that may wait for a slot; beyond, a login is refused at once (429) rather than queued without bound. @defaultValue 64 */
  hashWaiters: number;
}

/** The defaults (docs/security.md, "Users and sessions"). */
export const USER_SECURITY_DEFAULTS = {
  maxFailures: 5,
  lockoutMs: 15 * 60_000,
  sessionLifetimeMs: 12 * 3_600_000,
  sessionIdleTimeoutMs: 30 * 60_000,
  concurrentHashes: 2,
  hashWaiters: 64,
} as const satisfies UserSecurityConfig;

/** What a login presents. */
export interface LoginAttempt {
  username: string;
  password: string;
  totp?: string | undefined;
  recoveryCode?: string | undefined;
}

/** A second-factor proof: a TOTP code or a recovery code. */
export interface MfaProofInput {
  totp?: string | undefined;
  recoveryCode?: string | undefined;
}

/** Live sessions a user may hold (browsers, CLIs); a login beyond ends the oldest. */
export const MAX_SESSIONS_PER_USER = 32;

/** The users of a cluster. */
export class UserService {
  readonly config: UserSecurityConfig;
  private hashing = 0;
  private readonly waiting: (() => void)[] = [];
  private lastPrune = 0;

  constructor(
    private readonly store: Store,
    /** Seals each TOTP secret before it is stored (bound to its user): a copy of the database alone yields no second factor. */
    private readonly secrets: SecretKey,
    config: Partial<UserSecurityConfig> = {},
  ) {
    this.config = { ...USER_SECURITY_DEFAULTS, ...config };
  }

  private get sessionLimits(): SessionLimits {
    return { lifetimeMs: this.config.sessionLifetimeMs, idleTimeoutMs: this.config.sessionIdleTimeoutMs };
  }

  /** Runs `fn` (a password hash) within the concurrency bound. */
  private async bounded<T>(fn: () => Promise<T>): Promise<T> {
    if (this.hashing >= this.config.concurrentHashes) {
      if (this.waiting.length >= this.config.hashWaiters)
        throw new NovaError("NOVA_RATE_LIMITED", "Too many logins at once on this server; retry in 1 s.", {
          details: { limit: "password-hashing", retryAfterSeconds: 1 },
        });
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else this.hashing++;
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.hashing--;
    }
  }

  private hash(password: string): Promise<string> {
    return this.bounded(() => hashPassword(password));
  }

  private verify(password: string, stored: string): Promise<boolean> {
    return this.bounded(() => verifyPassword(password, stored));
  }

  /** The lock-out error for `user`, locked until `until`. */
  private lockedError(user: { username: string }, until: Date, why = ""): NovaError {
    return new NovaError(
      "NOVA_ACCOUNT_LOCKED",
      `${why}Account ${user.username} is locked after ${this.config.maxFailures} failed login attempts until ${until.toISOString()}; try again then, or ask an admin to unlock it (novacron user unlock ${user.username}).`,
      { details: { user: user.username, unlocksAt: until.toISOString() } },
    );
  }

  /** Counts a failure against `user` and returns the error to throw: `error`, or the lock-out it caused. */
  private async failed(user: UserRow, error: NovaError): Promise<NovaError> {
    const { lockedUntil } = await recordFailedAttempt(this.store.db, user.id, this.config);
    return lockedUntil ? this.lockedError(user, lockedUntil, `${error.message} `) : error;
  }

  /**
   * Checks a second-factor proof for a user whose MFA is on, consuming it (a TOTP time
   * step or a recovery code is accepted once); a failure counts towards the lock-out.
   */
  private async checkSecondFactor(user: UserRow, proof: MfaProofInput): Promise<void> {
    if (proof.totp !== undefined && proof.totp !== "") {
      const step = matchTotp(this.totpSecretOf(user), proof.totp);
      if (step === undefined)
        throw await this.failed(
          user,
          new NovaError(
            "NOVA_MFA_INVALID",
            "Wrong authentication code: type the 6-digit code your authenticator app shows now (check the phone's clock if it keeps failing).",
          ),
        );
      if (!(await acceptTotpStep(this.store.db, user.id, step)))
        throw await this.failed(
          user,
          new NovaError(
            "NOVA_MFA_REUSED",
            "This authentication code was already used: wait for the app to show the next one (at most 30 s).",
          ),
        );
      return;
    }
    if (proof.recoveryCode !== undefined && proof.recoveryCode !== "") {
      const outcome = await spendRecoveryCode(this.store.db, user.id, hashRecoveryCode(proof.recoveryCode));
      if (outcome === "used") return;
      throw await this.failed(
        user,
        outcome === "already-used"
          ? new NovaError(
              "NOVA_MFA_REUSED",
              "This recovery code was already used; each works once. Use another of your codes.",
            )
          : new NovaError("NOVA_MFA_INVALID", "Wrong recovery code: it is none of this account's codes."),
      );
    }
    throw new NovaError(
      "NOVA_MFA_REQUIRED",
      `Account ${user.username} has a second factor: send the authenticator app's current code (totp) or a recovery code (recoveryCode).`,
      { details: { user: user.username, accepts: ["totp", "recoveryCode"] } },
    );
  }

  /** Verifies `password` for `user` (a lock is checked first; a wrong one counts towards it). */
  private async checkPassword(user: UserRow, password: string): Promise<void> {
    if (user.locked && user.lockedUntil) throw this.lockedError(user, user.lockedUntil);
    if (!(await this.verify(password, user.passwordHash))) throw await this.failed(user, loginFailed());
  }

  /**
   * Logs a user in: the password, then (MFA on) the second factor; starts a session.
   * An unknown username costs the same time as a wrong password and gets the same error.
   */
  async login(
    attempt: LoginAttempt,
  ): Promise<{ user: UserRow; session: { token: string; id: string }; ended: string[] }> {
    const username = attempt.username.trim().toLowerCase();
    const user = await findUserByName(this.store.read, username);
    if (!user) {
      await this.verify(attempt.password, await decoyHash());
      throw loginFailed();
    }
    await this.checkPassword(user, attempt.password);
    if (user.mfaState === "on") await this.checkSecondFactor(user, attempt);
    await recordLogin(this.store.db, user.id);
    if (needsRehash(user.passwordHash)) {
      // Parameters were raised since this password was set: store it under the new ones.
      await setPasswordHash(this.store.db, user.id, await this.hash(attempt.password), user.passwordHash);
    }
    await this.pruneNow();
    const session = await createSession(this.store.db, user.id, this.sessionLimits);
    // Bounded: a user holds at most MAX_SESSIONS_PER_USER sessions; the oldest end first.
    const ended = await trimUserSessions(this.store.db, user.id, MAX_SESSIONS_PER_USER);
    return { user, session, ended };
  }

  /** Removes long-ended sessions, at most once a minute (login is when sessions are made). */
  private async pruneNow(): Promise<void> {
    if (Date.now() - this.lastPrune < 60_000) return;
    this.lastPrune = Date.now();
    await pruneSessions(this.store.db);
  }

  /**
   * The live session a token names, its last use recorded (the idle timeout restarts);
   * undefined for a token that names none (logged out, never existed); NOVA_SESSION_EXPIRED
   * for one that ended. `touch: false` checks without counting as use.
   */
  async resolveSession(token: string, options: { touch?: boolean } = {}): Promise<SessionRow | undefined> {
    const session = await findSession(this.store.read, token);
    if (!session) return undefined;
    if (session.expired) {
      const idle = session.idleExpiresAt.getTime() < session.expiresAt.getTime();
      throw new NovaError(
        "NOVA_SESSION_EXPIRED",
        `Your session ended ${idle ? `after ${idleSpan(this.config.sessionIdleTimeoutMs)} without use` : "at the end of its lifetime"}: log in again.`,
        {
          details: {
            reason: idle ? "idle" : "lifetime",
            endedAt: (idle ? session.idleExpiresAt : session.expiresAt).toISOString(),
          },
        },
      );
    }
    if (session.stale && options.touch !== false) await touchSession(this.store.db, session.id);
    return session;
  }

  /** Ends a session (logout). */
  async logout(sessionId: string): Promise<void> {
    await deleteSession(this.store.db, sessionId);
  }

  /** Creates a user; without a password one is generated and returned (shown once). */
  async create(input: { username: string; role: Role; password?: string | undefined }): Promise<{
    user: User;
    password?: string;
  }> {
    const generated = input.password === undefined ? generatePassword() : undefined;
    const password = input.password ?? (generated as string);
    assertAcceptablePassword(password);
    const row = await insertUser(this.store.db, {
      username: input.username,
      role: input.role,
      passwordHash: await this.hash(password),
    });
    return { user: publicUser(row), ...(generated ? { password: generated } : {}) };
  }

  /** Every user. */
  async list(): Promise<User[]> {
    return (await listUsers(this.store.read)).map(publicUser);
  }

  /** One user by name; NOVA_NOT_FOUND otherwise. */
  async get(username: string): Promise<User> {
    return publicUser(await getUserByName(this.store.read, username));
  }

  /** Deletes a user; returns the ids of the sessions that ended with them. */
  async delete(username: string): Promise<string[]> {
    return this.store.write(async (tx) => {
      const user = await getUserByName(tx, username);
      const sessions = await deleteUserSessions(tx, user.id);
      await deleteUser(tx, user.id);
      return sessions;
    });
  }

  /** Changes a user's role (it applies to their next request: sessions read the role each time). */
  async setRole(username: string, role: Role): Promise<User> {
    return this.store.write(async (tx) => {
      const user = await getUserByName(tx, username);
      await setUserRole(tx, user.id, role);
      return publicUser({ ...user, role });
    });
  }

  /**
   * Sets a new password for a user (an admin's reset; generated when not given, returned
   * once) and ends all their sessions; returns the ended sessions' ids.
   */
  async resetPassword(
    username: string,
    password?: string,
  ): Promise<{ user: User; password?: string; endedSessions: string[] }> {
    const generated = password === undefined ? generatePassword() : undefined;
    const next = password ?? (generated as string);
    assertAcceptablePassword(next);
    const hash = await this.hash(next);
    const { user, endedSessions } = await this.store.write(async (tx) => {
      const user = await getUserByName(tx, username);
      await setPasswordHash(tx, user.id, hash);
      return { user, endedSessions: await deleteUserSessions(tx, user.id) };
    });
    return { user: publicUser(user), ...(generated ? { password: generated } : {}), endedSessions };
  }

  /** Lifts a user's lock-out. */
  async unlock(username: string): Promise<User> {
    const user = await getUserByName(this.store.read, username);
    await unlockUser(this.store.db, user.id);
    return publicUser({ ...user, locked: false, lockedUntil: null, failedAttempts: 0 });
  }

  /** Turns a user's second factor off (an admin's decision, e.g. a lost phone and lost codes). */
  async adminDisableMfa(username: string): Promise<User> {
    const user = await getUserByName(this.store.read, username);
    if (user.mfaState !== "off") await disableMfa(this.store.db, user);
    return publicUser({ ...user, mfaState: "off", totpSecret: null });
  }

  /** The user's TOTP secret, opened ("" when none: no code matches). */
  private totpSecretOf(user: UserRow): string {
    const stored = user.totpSecret;
    if (!stored) return "";
    // Stored before secrets were sealed and not yet sealed at start: still the secret.
    return isSealedText(stored) ? this.secrets.openText(totpBinding(user.id), stored) : stored;
  }

  /**
   * Seals the TOTP secrets stored in clear by a server from before they were sealed (at
   * start; each row compare-and-set on its clear value). Returns how many were sealed.
   */
  async sealClearTotpSecrets(): Promise<number> {
    const clear = await usersWithClearTotpSecrets(this.store.read);
    let sealed = 0;
    for (const u of clear)
      if (
        await replaceTotpSecret(
          this.store.db,
          u.id,
          u.totpSecret,
          this.secrets.sealText(totpBinding(u.id), u.totpSecret),
        )
      )
        sealed++;
    return sealed;
  }

  /** The logged-in user's row; NOVA_UNAUTHENTICATED when it was deleted meanwhile. */
  private async self(username: string): Promise<UserRow> {
    const user = await findUserByName(this.store.read, username);
    if (!user) throw new NovaError("NOVA_UNAUTHENTICATED", "This user no longer exists. Log in again.");
    return user;
  }

  /** Starts (or restarts) TOTP enrolment for a logged-in user: a new secret and its URI. */
  async beginEnrolment(username: string): Promise<{ secret: string; uri: string }> {
    const user = await this.self(username);
    if (user.mfaState === "on")
      throw new NovaError(
        "NOVA_ILLEGAL_STATE",
        "Your second factor is already on. To enrol a new authenticator, turn it off first (novacron user mfa disable, with a current code).",
        { details: { state: "on", action: "enrol" } },
      );
    const secret = newTotpSecret();
    await beginMfaEnrolment(this.store.db, user, this.secrets.sealText(totpBinding(user.id), secret));
    return { secret, uri: totpUri(secret, user.username) };
  }

  /** Confirms an enrolment with a code from the new secret; returns the recovery codes (shown once). */
  async confirmEnrolment(username: string, code: string): Promise<string[]> {
    const user = await this.self(username);
    if (user.mfaState !== "pending")
      throw new NovaError(
        "NOVA_ILLEGAL_STATE",
        user.mfaState === "on"
          ? "Your second factor is already on."
          : "There is no enrolment to confirm: start one first (novacron user mfa enrol).",
        { details: { state: user.mfaState, action: "confirm" } },
      );
    const step = matchTotp(this.totpSecretOf(user), code);
    if (step === undefined)
      throw new NovaError(
        "NOVA_MFA_INVALID",
        "Wrong authentication code: type the 6-digit code the app shows for the secret just enrolled.",
      );
    const codes = newRecoveryCodes();
    await this.store.write((tx) => confirmMfaEnrolment(tx, user, step, codes.map(hashRecoveryCode)));
    return codes;
  }

  /**
   * Turns the logged-in user's second factor off: with a current code or a recovery code
   * when it is on (a failure counts towards the lock-out), freely while only pending.
   */
  async disableOwnMfa(username: string, proof: MfaProofInput): Promise<void> {
    const user = await this.self(username);
    if (user.mfaState === "off") return;
    if (user.mfaState === "on") {
      if (user.locked && user.lockedUntil) throw this.lockedError(user, user.lockedUntil);
      await this.checkSecondFactor(user, proof);
    }
    await disableMfa(this.store.db, user);
  }

  /** Changes the logged-in user's password (the current one checked) and ends their other sessions. */
  async changeOwnPassword(
    username: string,
    current: string,
    next: string,
    keepSession: string | undefined,
  ): Promise<string[]> {
    const user = await this.self(username);
    await this.checkPassword(user, current);
    assertAcceptablePassword(next);
    const hash = await this.hash(next);
    return this.store.write(async (tx) => {
      await setPasswordHash(tx, user.id, hash);
      return deleteUserSessions(tx, user.id, keepSession);
    });
  }
}

/** The one answer to a wrong username or password: which of the two is not said. */
function loginFailed(): NovaError {
  return new NovaError("NOVA_LOGIN_FAILED", "Wrong username or password.");
}

/** An idle timeout in words: minutes, or seconds when under two minutes (a short test timeout read "0 minutes"). */
function idleSpan(ms: number): string {
  return ms < 120_000 ? `${Math.round(ms / 1000)} seconds` : `${Math.round(ms / 60_000)} minutes`;
}

/** What a user's sealed TOTP secret is bound to: that user only. */
function totpBinding(userId: string): string {
  return `user-totp:${userId}`;
}
