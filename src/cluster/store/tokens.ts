/** API tokens: admin tokens for users, join tokens for agents. Only hashes are stored. */
import { createHash, randomBytes, randomUUID } from "node:crypto";
import type { Queryable, ReadQueryable } from "./db.js";

/** The kinds of token; RBAC roles extend this later. */
export type TokenKind = "admin" | "join";

/** A token row (never the secret itself). */
export interface TokenRecord {
  id: string;
  name: string;
  kind: TokenKind;
  /** Permissions granted beyond the kind's (e.g. executions:approve-own). */
  grants: string[];
}

/** A token as listed: its record plus when it was made and revoked. */
export interface TokenInfo extends TokenRecord {
  createdAt: string;
  revokedAt: string | null;
}

/** SHA-256 of a token, hex. Tokens are 256-bit random, so a fast hash is enough. */
export function hashToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

/** A fresh random token with a prefix saying what it is for. */
export function generateToken(prefix: "nva" | "nvj" | "nvh"): string {
  return `${prefix}_${randomBytes(32).toString("base64url")}`;
}

/** Creates a token; returns the secret (shown once) and its record. */
export async function createToken(
  q: Queryable,
  name: string,
  kind: TokenKind,
  grants: string[] = [],
): Promise<{ token: string; record: TokenRecord }> {
  const token = generateToken(kind === "admin" ? "nva" : "nvj");
  const id = randomUUID();
  await q.query("INSERT INTO api_tokens (id, name, kind, token_hash, grants) VALUES ($1, $2, $3, $4, $5)", [
    id,
    name,
    kind,
    hashToken(token),
    grants,
  ]);
  return { token, record: { id, name, kind, grants } };
}

/** Looks a presented token up; undefined when unknown or revoked. */
export async function findToken(q: ReadQueryable, token: string): Promise<TokenRecord | undefined> {
  const { rows } = await q.query<TokenRecord>(
    "SELECT id, name, kind, grants FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
    [hashToken(token)],
  );
  return rows[0];
}

/** Every token, oldest first (revoked ones too, with when). */
export async function listTokens(q: ReadQueryable): Promise<TokenInfo[]> {
  const { rows } = await q.query<TokenRecord & { created_at: Date; revoked_at: Date | null }>(
    "SELECT id, name, kind, grants, created_at, revoked_at FROM api_tokens ORDER BY created_at, id",
  );
  return rows.map((r) => ({
    id: r.id,
    name: r.name,
    kind: r.kind,
    grants: r.grants,
    createdAt: new Date(r.created_at).toISOString(),
    revokedAt: r.revoked_at ? new Date(r.revoked_at).toISOString() : null,
  }));
}

/** Revokes a live token; false when there is none with that id. */
export async function revokeToken(q: Queryable, id: string): Promise<boolean> {
  const { rowCount } = await q.query(
    "UPDATE api_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
    [id],
  );
  return rowCount > 0;
}

/** Number of live tokens of a kind (first start creates them when zero). */
export async function countTokens(q: ReadQueryable, kind: TokenKind): Promise<number> {
  const { rows } = await q.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM api_tokens WHERE kind = $1 AND revoked_at IS NULL",
    [kind],
  );
  return rows[0]?.n ?? 0;
}
