/**
 * Join tokens: one per agent to be, bound to its host name, expiring, used once. Only the
 * hash is stored. The token's text form (security/join-token.ts) also carries the cluster
 * CA's fingerprint (docs/security.md).
 */
import { randomBytes, randomUUID } from "node:crypto";
import { NovaError } from "../../lib/errors.js";
import { formatJoinToken } from "../../security/join-token.js";
import type { Queryable, ReadQueryable } from "./db.js";
import { hashToken } from "./tokens.js";

/** A join token as listed (never its secret). */
export interface JoinTokenInfo {
  id: string;
  hostName: string;
  replace: boolean;
  createdBy: string;
  createdAt: string;
  expiresAt: string;
  usedAt: string | null;
}

/** Creates a join token for `hostName`; returns its text (shown once) and record. */
export async function createJoinToken(
  q: Queryable,
  input: { hostName: string; ttlSeconds: number; replace: boolean; createdBy: string; caFingerprint: string },
): Promise<{ token: string; info: JoinTokenInfo }> {
  const token = formatJoinToken(randomBytes(32).toString("base64url"), input.caFingerprint);
  const id = randomUUID();
  const { rows } = await q.query<{ created_at: Date; expires_at: Date }>(
    `INSERT INTO join_tokens (id, host_name, token_hash, replace, created_by, expires_at)
     VALUES ($1, $2, $3, $4, $5, now() + ($6::int * interval '1 second'))
     RETURNING created_at, expires_at`,
    [id, input.hostName, hashToken(token), input.replace, input.createdBy, input.ttlSeconds],
  );
  return {
    token,
    info: {
      id,
      hostName: input.hostName,
      replace: input.replace,
      createdBy: input.createdBy,
      createdAt: new Date(rows[0]!.created_at).toISOString(),
      expiresAt: new Date(rows[0]!.expires_at).toISOString(),
      usedAt: null,
    },
  };
}

/**
 * Uses a join token for `hostName` (compare-and-set: at most one use ever). Returns whether
 * it allows replacing an existing host; throws NOVA_UNAUTHENTICATED for an unknown, used or
 * expired token and NOVA_FORBIDDEN for one made for another host name (not used up then).
 */
export async function consumeJoinToken(
  q: Queryable,
  token: string,
  hostName: string,
): Promise<{ replace: boolean }> {
  const hash = hashToken(token.trim());
  const { rows } = await q.query<{ host_name: string; used_at: Date | null; expired: boolean }>(
    "SELECT host_name, used_at, expires_at <= now() AS expired FROM join_tokens WHERE token_hash = $1",
    [hash],
  );
  const row = rows[0];
  if (!row)
    throw new NovaError(
      "NOVA_UNAUTHENTICATED",
      "Unknown join token. Make one with: novacron host join-token <host name>",
    );
  if (row.used_at) {
    throw new NovaError(
      "NOVA_UNAUTHENTICATED",
      `This join token was already used (at ${new Date(row.used_at).toISOString()}); each token joins one agent once. Make a new one with: novacron host join-token ${row.host_name}`,
    );
  }
  if (row.expired) {
    throw new NovaError(
      "NOVA_UNAUTHENTICATED",
      `This join token has expired. Make a new one with: novacron host join-token ${row.host_name}`,
    );
  }
  if (row.host_name !== hostName) {
    throw new NovaError(
      "NOVA_FORBIDDEN",
      `This join token is for host ${row.host_name}, not ${hostName}. Start the agent with --name ${row.host_name}, or make a token for ${hostName}.`,
      { details: { tokenHost: row.host_name, host: hostName } },
    );
  }
  const used = await q.query<{ replace: boolean }>(
    "UPDATE join_tokens SET used_at = now() WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now() RETURNING replace",
    [hash],
  );
  if (!used.rows[0])
    throw new NovaError("NOVA_UNAUTHENTICATED", "This join token was used concurrently by another agent.");
  return { replace: used.rows[0].replace };
}

/** Join tokens, newest first (used and expired ones too). */
export async function listJoinTokens(q: ReadQueryable): Promise<JoinTokenInfo[]> {
  const { rows } = await q.query<{
    id: string;
    host_name: string;
    replace: boolean;
    created_by: string;
    created_at: Date;
    expires_at: Date;
    used_at: Date | null;
  }>("SELECT * FROM join_tokens ORDER BY created_at DESC, id");
  return rows.map((r) => ({
    id: r.id,
    hostName: r.host_name,
    replace: r.replace,
    createdBy: r.created_by,
    createdAt: new Date(r.created_at).toISOString(),
    expiresAt: new Date(r.expires_at).toISOString(),
    usedAt: r.used_at ? new Date(r.used_at).toISOString() : null,
  }));
}
