/**
 * The users table: accounts with a role, a scrypt password hash, the TOTP second factor
 * (its state a compare-and-set on states/user-mfa.ts), single-use recovery codes (hashed),
 * and the lock-out counters. Every time is the database's clock, so replicas agree on
 * when a lock ends. The rules (when to lock, what a login needs) live in
 * cluster/user-service.ts; this module only reads and writes.
 */
import { randomUUID } from "node:crypto";
import type { Role, User } from "../../api/types/users.js";
import { NovaError } from "../../lib/errors.js";
import { USER_MFA, type UserMfaState } from "../../states/user-mfa.js";
import type { Queryable, ReadQueryable } from "./db.js";

/** A user's row, secrets included: never sent to a client (`publicUser` is). */
export interface UserRow {
  id: string;
  username: string;
  role: Role;
  passwordHash: string;
  mfaState: UserMfaState;
  totpSecret: string | null;
  totpLastStep: number | null;
  failedAttempts: number;
  lockedUntil: Date | null;
  /** True while locked_until is in the future, by the database's clock. */
  locked: boolean;
  lastLoginAt: Date | null;
  createdAt: Date;
  passwordChangedAt: Date;
}

const COLUMNS = `id, username, role, password_hash, mfa_state, totp_secret, totp_last_step, failed_attempts,
  locked_until, (locked_until IS NOT NULL AND locked_until > now()) AS locked, last_login_at, created_at, password_changed_at`;

interface RawUser {
  id: string;
  username: string;
  role: Role;
  password_hash: string;
  mfa_state: UserMfaState;
  totp_secret: string | null;
  totp_last_step: number | string | null;
  failed_attempts: number;
  locked_until: Date | string | null;
  locked: boolean;
  last_login_at: Date | string | null;
  created_at: Date | string;
  password_changed_at: Date | string;
}

const date = (v: Date | string) => new Date(v);
const maybeDate = (v: Date | string | null) => (v === null ? null : new Date(v));

function fromRow(r: RawUser): UserRow {
  return {
    id: r.id,
    username: r.username,
    role: r.role,
    passwordHash: r.password_hash,
    mfaState: r.mfa_state,
    totpSecret: r.totp_secret,
    totpLastStep: r.totp_last_step === null ? null : Number(r.totp_last_step),
    failedAttempts: r.failed_attempts,
    lockedUntil: maybeDate(r.locked_until),
    locked: r.locked,
    lastLoginAt: maybeDate(r.last_login_at),
    createdAt: date(r.created_at),
    passwordChangedAt: date(r.password_changed_at),
  };
}

/** A user as the API shows it: no hash, no secret. */
export function publicUser(u: UserRow): User {
  return {
    id: u.id,
    username: u.username,
    role: u.role,
    mfa: u.mfaState,
    lockedUntil: u.locked && u.lockedUntil ? u.lockedUntil.toISOString() : null,
    failedAttempts: u.failedAttempts,
    lastLoginAt: u.lastLoginAt?.toISOString() ?? null,
    createdAt: u.createdAt.toISOString(),
    passwordChangedAt: u.passwordChangedAt.toISOString(),
  };
}

/** Inserts a user; NOVA_CONFLICT when the username is taken. */
export async function insertUser(
  q: Queryable,
  user: { username: string; role: Role; passwordHash: string },
): Promise<UserRow> {
  const { rows } = await q.query<RawUser>(
    `INSERT INTO users (id, username, role, password_hash) VALUES ($1, $2, $3, $4)
     ON CONFLICT (username) DO NOTHING RETURNING ${COLUMNS}`,
    [randomUUID(), user.username, user.role, user.passwordHash],
  );
  if (!rows[0])
    throw new NovaError("NOVA_CONFLICT", `A user named ${user.username} already exists. Pick another name.`, {
      details: { user: user.username },
    });
  return fromRow(rows[0]);
}

/** The user with this username, or undefined. */
export async function findUserByName(q: ReadQueryable, username: string): Promise<UserRow | undefined> {
  const { rows } = await q.query<RawUser>(`SELECT ${COLUMNS} FROM users WHERE username = $1`, [username]);
  return rows[0] ? fromRow(rows[0]) : undefined;
}

/** The user with this id, or undefined. */
export async function findUserById(q: ReadQueryable, id: string): Promise<UserRow | undefined> {
  const { rows } = await q.query<RawUser>(`SELECT ${COLUMNS} FROM users WHERE id = $1`, [id]);
  return rows[0] ? fromRow(rows[0]) : undefined;
}

/** The user with this username; NOVA_NOT_FOUND otherwise. */
export async function getUserByName(q: ReadQueryable, username: string): Promise<UserRow> {
  const user = await findUserByName(q, username);
  if (!user)
    throw new NovaError("NOVA_NOT_FOUND", `User ${username} not found (see: novacron user list).`, {
      details: { user: username },
    });
  return user;
}

/** Every user, by name. */
export async function listUsers(q: ReadQueryable): Promise<UserRow[]> {
  const { rows } = await q.query<RawUser>(`SELECT ${COLUMNS} FROM users ORDER BY username`);
  return rows.map(fromRow);
}

/** Deletes a user (their sessions and recovery codes go with them); false when there was none. */
export async function deleteUser(q: Queryable, id: string): Promise<boolean> {
  const { rowCount } = await q.query("DELETE FROM users WHERE id = $1", [id]);
  return rowCount > 0;
}

/** Sets a user's role. */
export async function setUserRole(q: Queryable, id: string, role: Role): Promise<void> {
  await q.query("UPDATE users SET role = $2, updated_at = now() WHERE id = $1", [id, role]);
}

/**
 * Replaces a user's password hash. `expectedHash` makes it a compare-and-set (a rehash at
 * login must not undo a reset that happened meanwhile); false when the hash had changed.
 */
export async function setPasswordHash(
  q: Queryable,
  id: string,
  hash: string,
  expectedHash?: string,
): Promise<boolean> {
  const { rowCount } = await q.query(
    `UPDATE users SET password_hash = $2, password_changed_at = now(), updated_at = now()
     WHERE id = $1 AND ($3::text IS NULL OR password_hash = $3)`,
    [id, hash, expectedHash ?? null],
  );
  return rowCount > 0;
}

/**
 * Counts one failed attempt (a wrong password or second factor). Failures older than
 * `lockoutMs` are forgotten first; the `maxFailures`-th within that window locks the
 * account for `lockoutMs`. Returns the count and, when locked now, until when.
 */
export async function recordFailedAttempt(
  q: Queryable,
  id: string,
  limits: { maxFailures: number; lockoutMs: number },
): Promise<{ failedAttempts: number; lockedUntil: Date | null }> {
  const fresh = "(last_failed_at IS NULL OR last_failed_at <= now() - $3 * interval '1 millisecond')";
  const count = `(CASE WHEN ${fresh} THEN 1 ELSE failed_attempts + 1 END)`;
  const { rows } = await q.query<{
    failed_attempts: number;
    locked_until: Date | string | null;
    locked: boolean;
  }>(
    `UPDATE users SET
       failed_attempts = ${count},
       locked_until = CASE WHEN ${count} >= $2 THEN now() + $3 * interval '1 millisecond' ELSE locked_until END,
       last_failed_at = now(),
       updated_at = now()
     WHERE id = $1
     RETURNING failed_attempts, locked_until, (locked_until IS NOT NULL AND locked_until > now()) AS locked`,
    [id, limits.maxFailures, limits.lockoutMs],
  );
  const r = rows[0];
  if (!r) return { failedAttempts: 0, lockedUntil: null };
  return { failedAttempts: r.failed_attempts, lockedUntil: r.locked ? maybeDate(r.locked_until) : null };
}

/** A successful login: the failure count starts again, the login is recorded. */
export async function recordLogin(q: Queryable, id: string): Promise<void> {
  await q.query(
    "UPDATE users SET failed_attempts = 0, last_failed_at = NULL, locked_until = NULL, last_login_at = now() WHERE id = $1",
    [id],
  );
}

/** Lifts a lock-out and forgets the failures (an admin's decision). */
export async function unlockUser(q: Queryable, id: string): Promise<void> {
  await q.query(
    "UPDATE users SET failed_attempts = 0, last_failed_at = NULL, locked_until = NULL, updated_at = now() WHERE id = $1",
    [id],
  );
}

/**
 * Moves a user's MFA state `from → to` as one compare-and-set, setting the TOTP secret
 * (null for off) and clearing the last accepted step; NOVA_STATE_CHANGED when another
 * writer moved it first.
 */
async function moveMfa(
  q: Queryable,
  user: { id: string; username: string },
  from: UserMfaState,
  to: UserMfaState,
  secret: string | null,
  lastStep: number | null = null,
): Promise<void> {
  USER_MFA.assertTransition(`user ${user.username}`, from, to);
  const { rowCount } = await q.query(
    `UPDATE users SET mfa_state = $3, totp_secret = $4, totp_last_step = $5, updated_at = now()
     WHERE id = $1 AND mfa_state = $2`,
    [user.id, from, to, secret, lastStep],
  );
  if (rowCount === 0)
    throw new NovaError(
      "NOVA_STATE_CHANGED",
      `The second factor of user ${user.username} was changed meanwhile; look again and retry.`,
      { details: { user: user.username, from, to } },
    );
}

/** Starts (or restarts) a TOTP enrolment with `secret`: off or pending → pending. */
export async function beginMfaEnrolment(q: Queryable, user: UserRow, secret: string): Promise<void> {
  await moveMfa(q, user, user.mfaState, "pending", secret);
}

/**
 * Confirms an enrolment whose code of time step `step` was verified: pending → on, with
 * that step as the last accepted and the recovery codes (their hashes) replaced.
 */
export async function confirmMfaEnrolment(
  q: Queryable,
  user: UserRow,
  step: number,
  recoveryCodeHashes: readonly string[],
): Promise<void> {
  await moveMfa(q, user, "pending", "on", user.totpSecret, step);
  await q.query("DELETE FROM user_recovery_codes WHERE user_id = $1", [user.id]);
  for (const hash of recoveryCodeHashes)
    await q.query("INSERT INTO user_recovery_codes (user_id, code_hash) VALUES ($1, $2)", [user.id, hash]);
}

/** Turns the second factor off (pending or on → off) and drops the recovery codes. */
export async function disableMfa(q: Queryable, user: UserRow): Promise<void> {
  await moveMfa(q, user, user.mfaState, "off", null);
  await q.query("DELETE FROM user_recovery_codes WHERE user_id = $1", [user.id]);
}

/**
 * Accepts TOTP time step `step` for a user whose MFA is on, once: false when that step
 * (or a later one) was already accepted, so a code cannot be replayed.
 */
export async function acceptTotpStep(q: Queryable, id: string, step: number): Promise<boolean> {
  const { rowCount } = await q.query(
    `UPDATE users SET totp_last_step = $2
     WHERE id = $1 AND mfa_state = 'on' AND (totp_last_step IS NULL OR totp_last_step < $2)`,
    [id, step],
  );
  return rowCount > 0;
}

/** Uses a recovery code (by hash): `used` now, `already-used` before, or `unknown`. */
export async function spendRecoveryCode(
  q: Queryable,
  id: string,
  codeHash: string,
): Promise<"used" | "already-used" | "unknown"> {
  const { rowCount } = await q.query(
    "UPDATE user_recovery_codes SET used_at = now() WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
    [id, codeHash],
  );
  if (rowCount > 0) return "used";
  const { rows } = await q.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM user_recovery_codes WHERE user_id = $1 AND code_hash = $2",
    [id, codeHash],
  );
  return (rows[0]?.n ?? 0) > 0 ? "already-used" : "unknown";
}

/** How many of a user's recovery codes are still unused. */
export async function unusedRecoveryCodes(q: ReadQueryable, id: string): Promise<number> {
  const { rows } = await q.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM user_recovery_codes WHERE user_id = $1 AND used_at IS NULL",
    [id],
  );
  return rows[0]?.n ?? 0;
}

/** Users whose TOTP secret is stored in clear (written before secrets were sealed). */
export async function usersWithClearTotpSecrets(
  q: ReadQueryable,
): Promise<{ id: string; totpSecret: string }[]> {
  const { rows } = await q.query<{ id: string; totp_secret: string }>(
    "SELECT id, totp_secret FROM users WHERE totp_secret IS NOT NULL AND totp_secret NOT LIKE 'v1.%'",
  );
  return rows.map((r) => ({ id: r.id, totpSecret: r.totp_secret }));
}

/** Replaces a user's stored TOTP secret if it is still `from` (compare-and-set); false when it changed meanwhile. */
export async function replaceTotpSecret(
  q: Queryable,
  userId: string,
  from: string,
  to: string,
): Promise<boolean> {
  const { rowCount } = await q.query("UPDATE users SET totp_secret = $3 WHERE id = $1 AND totp_secret = $2", [
    userId,
    from,
    to,
  ]);
  return (rowCount ?? 0) > 0;
}
