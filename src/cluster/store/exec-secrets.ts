/**
 * The exec_secrets table: ciphertext only (exec/secrets.ts seals and opens the values;
 * nothing here ever sees a plaintext).
 */
import type { Queryable, ReadQueryable } from "./db.js";

/** A secret as stored: AES-256-GCM ciphertext with its IV and tag, base64. */
export interface SealedSecret {
  iv: string;
  tag: string;
  ciphertext: string;
}

/** Stores (or replaces) a sealed secret. */
export async function upsertSealedSecret(q: Queryable, name: string, sealed: SealedSecret): Promise<void> {
  await q.query(
    `INSERT INTO exec_secrets (name, iv, tag, ciphertext) VALUES ($1, $2, $3, $4)
     ON CONFLICT (name) DO UPDATE SET iv = EXCLUDED.iv, tag = EXCLUDED.tag, ciphertext = EXCLUDED.ciphertext, updated_at = now()`,
    [name, sealed.iv, sealed.tag, sealed.ciphertext],
  );
}

/** Names and dates only: values never leave the server. */
export async function listSecrets(q: ReadQueryable): Promise<{ name: string; updatedAt: string }[]> {
  const { rows } = await q.query<{ name: string; updated_at: Date }>(
    "SELECT name, updated_at FROM exec_secrets ORDER BY name",
  );
  return rows.map((r) => ({ name: r.name, updatedAt: new Date(r.updated_at).toISOString() }));
}

/** Deletes a secret; false when there was none. */
export async function deleteSecret(q: Queryable, name: string): Promise<boolean> {
  const { rowCount } = await q.query("DELETE FROM exec_secrets WHERE name = $1", [name]);
  return rowCount > 0;
}

/** Names from `names` that are not stored. */
export async function missingSecrets(q: ReadQueryable, names: Iterable<string>): Promise<string[]> {
  const list = [...names];
  if (list.length === 0) return [];
  const { rows } = await q.query<{ name: string }>("SELECT name FROM exec_secrets WHERE name = ANY($1)", [
    list,
  ]);
  const have = new Set(rows.map((r) => r.name));
  return list.filter((n) => !have.has(n));
}

/** The sealed rows of `names` that exist. */
export async function sealedSecrets(
  q: ReadQueryable,
  names: string[],
): Promise<(SealedSecret & { name: string })[]> {
  const { rows } = await q.query<SealedSecret & { name: string }>(
    "SELECT name, iv, tag, ciphertext FROM exec_secrets WHERE name = ANY($1)",
    [names],
  );
  return rows;
}
