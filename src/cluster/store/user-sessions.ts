/**
 * Login sessions (table user_sessions): a 256-bit random token, stored only as its
 * SHA-256, with a per-session CSRF token, an absolute lifetime and an idle timeout. The
 * console holds the token in a cookie, the CLI as a bearer token (`nvs_…`). Expiry is
 * judged by the database's clock; an ended session stays a day so that presenting it
 * says "expired" rather than "unknown", then `pruneSessions` removes it.
 */
import { randomBytes, randomUUID } from "node:crypto";
import type { Role } from "../../api/types/users.js";
import type { UserMfaState } from "../../states/user-mfa.js";
import type { Queryable, ReadQueryable } from "./db.js";
import { hashToken } from "./tokens.js";

/** Session tokens start with this, so the API tells them from API tokens without a lookup. */
export const SESSION_TOKEN_PREFIX = "nvs_";

/** A session's lifetime limits. */
export interface SessionLimits {
  /** Ends this long after login whatever happens. */
  lifetimeMs: number;
  /** Ends after this long without a request. */
  idleTimeoutMs: number;
}

/** A session as found by its token, with its user. */
export interface SessionRow {
  id: string;
  userId: string;
  username: string;
  role: Role;
  mfaState: UserMfaState;
  csrfToken: string;
  createdAt: Date;
  expiresAt: Date;
  /** When it ends if idle from now (last use + idle timeout). */
  idleExpiresAt: Date;
  /** True when it has ended (either limit), by the database's clock. */
  expired: boolean;
  /**
   * True when its last recorded use is over a minute old (or a quarter of a short idle
   * timeout): touch it, so the idle timeout restarts. Touching at most that often keeps
   * reads from writing on every request.
   */
  stale: boolean;
}

/** Starts a session for `userId`; returns its token (given to the client once) and its row. */
export async function createSession(
  q: Queryable,
  userId: string,
  limits: SessionLimits,
): Promise<{ token: string; id: string }> {
  const token = `${SESSION_TOKEN_PREFIX}${randomBytes(32).toString("base64url")}`;
  const id = randomUUID();
  await q.query(
    `INSERT INTO user_sessions (id, user_id, token_hash, csrf_token, expires_at, idle_timeout_ms)
     VALUES ($1, $2, $3, $4, now() + $5 * interval '1 millisecond', $6)`,
    [
      id,
      userId,
      hashToken(token),
      randomBytes(32).toString("base64url"),
      limits.lifetimeMs,
      limits.idleTimeoutMs,
    ],
  );
  return { token, id };
}

interface RawSession {
  id: string;
  user_id: string;
  username: string;
  role: Role;
  mfa_state: UserMfaState;
  csrf_token: string;
  created_at: Date | string;
  expires_at: Date | string;
  idle_expires_at: Date | string;
  expired: boolean;
  stale: boolean;
}

const SESSION_SELECT = `SELECT s.id, s.user_id, u.username, u.role, u.mfa_state, s.csrf_token, s.created_at, s.expires_at,
    s.last_seen_at + s.idle_timeout_ms * interval '1 millisecond' AS idle_expires_at,
    (now() >= s.expires_at OR now() >= s.last_seen_at + s.idle_timeout_ms * interval '1 millisecond') AS expired,
    (s.last_seen_at < now() - LEAST(interval '60 seconds', s.idle_timeout_ms * interval '250 microseconds')) AS stale
  FROM user_sessions s JOIN users u ON u.id = s.user_id`;

function fromRow(r: RawSession): SessionRow {
  return {
    id: r.id,
    userId: r.user_id,
    username: r.username,
    role: r.role,
    mfaState: r.mfa_state,
    csrfToken: r.csrf_token,
    createdAt: new Date(r.created_at),
    expiresAt: new Date(r.expires_at),
    idleExpiresAt: new Date(r.idle_expires_at),
    expired: r.expired,
    stale: r.stale,
  };
}

/** The session a token names (expired ones too, flagged), or undefined. */
export async function findSession(q: ReadQueryable, token: string): Promise<SessionRow | undefined> {
  const { rows } = await q.query<RawSession>(`${SESSION_SELECT} WHERE s.token_hash = $1`, [hashToken(token)]);
  return rows[0] ? fromRow(rows[0]) : undefined;
}

/** The session with this id, or undefined. */
export async function findSessionById(q: ReadQueryable, id: string): Promise<SessionRow | undefined> {
  const { rows } = await q.query<RawSession>(`${SESSION_SELECT} WHERE s.id = $1`, [id]);
  return rows[0] ? fromRow(rows[0]) : undefined;
}

/** Marks a live session used now (its idle timeout starts again); no-op for an ended one. */
export async function touchSession(q: Queryable, id: string): Promise<void> {
  await q.query(
    `UPDATE user_sessions SET last_seen_at = now()
     WHERE id = $1 AND now() < expires_at AND now() < last_seen_at + idle_timeout_ms * interval '1 millisecond'`,
    [id],
  );
}

/** Ends a session (logout); false when there was none. */
export async function deleteSession(q: Queryable, id: string): Promise<boolean> {
  const { rowCount } = await q.query("DELETE FROM user_sessions WHERE id = $1", [id]);
  return rowCount > 0;
}

/** Ends every session of a user (password reset, deletion); returns their ids. */
export async function deleteUserSessions(q: Queryable, userId: string, except?: string): Promise<string[]> {
  const { rows } = await q.query<{ id: string }>(
    "DELETE FROM user_sessions WHERE user_id = $1 AND ($2::uuid IS NULL OR id <> $2) RETURNING id",
    [userId, except ?? null],
  );
  return rows.map((r) => r.id);
}

/** The ids of a user's sessions. */
export async function userSessionIds(q: ReadQueryable, userId: string): Promise<string[]> {
  const { rows } = await q.query<{ id: string }>("SELECT id FROM user_sessions WHERE user_id = $1", [userId]);
  return rows.map((r) => r.id);
}

/** Ends a user's oldest sessions beyond the newest `keep`; returns their ids. */
export async function trimUserSessions(q: Queryable, userId: string, keep: number): Promise<string[]> {
  const { rows } = await q.query<{ id: string }>(
    `DELETE FROM user_sessions WHERE user_id = $1 AND id NOT IN (
       SELECT id FROM user_sessions WHERE user_id = $1 ORDER BY created_at DESC, id LIMIT $2)
     RETURNING id`,
    [userId, keep],
  );
  return rows.map((r) => r.id);
}

/** Removes sessions that ended over a day ago; returns how many. */
export async function pruneSessions(q: Queryable): Promise<number> {
  const { rowCount } = await q.query(
    `DELETE FROM user_sessions
     WHERE expires_at < now() - interval '1 day'
        OR last_seen_at + idle_timeout_ms * interval '1 millisecond' < now() - interval '1 day'`,
  );
  return rowCount;
}
