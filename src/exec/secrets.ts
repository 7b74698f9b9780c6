/**
 * Secrets for execution steps: values encrypted with AES-256-GCM under the server's key
 * (NOVACRON_SECRETS_KEY, base64 of 32 bytes, or `<data-dir>/secrets.key` created 0600 on
 * first start), stored as ciphertext only, resolved just in time when a step starts.
 * Steps reference them as `${secret:NAME}` in any string field.
 */
import type { Queryable, ReadQueryable } from "../cluster/store/db.js";
import { sealedSecrets, upsertSealedSecret } from "../cluster/store/exec-secrets.js";
import { NovaError } from "../lib/errors.js";
import type { SecretKey } from "../security/secret-key.js";

export { SecretKey } from "../security/secret-key.js";

/** `${secret:NAME}` — names are lowercase letters, digits, dot, dash, underscore. */
export const SECRET_REF = /\$\{secret:([a-z0-9][a-z0-9._-]{0,62})\}/g;

/** The reference a plan writes to use secret `name`. */
export function secretRef(name: string): string {
  return `\${secret:${name}}`;
}

/** Stores (or replaces) a secret. */
export async function putSecret(q: Queryable, key: SecretKey, name: string, value: string): Promise<void> {
  if (!/^[a-z0-9][a-z0-9._-]{0,62}$/.test(name)) {
    throw new NovaError(
      "NOVA_BAD_REQUEST",
      `Secret name ${JSON.stringify(name)} is invalid: use 1-63 lowercase letters, digits, '.', '-' or '_'.`,
    );
  }
  if (value.length < 4) {
    // The masker ignores values this short (they would mask ordinary words), so refuse them.
    throw new NovaError(
      "NOVA_BAD_REQUEST",
      `Secret ${name} is shorter than 4 characters; it could not be masked.`,
    );
  }
  await upsertSealedSecret(q, name, key.seal(name, value));
}

export { deleteSecret, listSecrets, missingSecrets } from "../cluster/store/exec-secrets.js";

/** Names referenced anywhere in a JSON-like value. */
export function secretRefs(value: unknown, out = new Set<string>()): Set<string> {
  if (typeof value === "string") {
    for (const m of value.matchAll(SECRET_REF)) out.add(m[1]!);
  } else if (Array.isArray(value)) {
    for (const v of value) secretRefs(v, out);
  } else if (value && typeof value === "object") {
    for (const v of Object.values(value)) secretRefs(v, out);
  }
  return out;
}

/**
 * Replaces every `${secret:NAME}` in `value` with the decrypted value, just before a step
 * runs; returns the resolved copy and the values (for the masker). The resolved copy must
 * only live in memory.
 */
export async function resolveSecrets<T>(
  q: ReadQueryable,
  key: SecretKey,
  value: T,
): Promise<{ resolved: T; values: string[] }> {
  const names = [...secretRefs(value)];
  if (names.length === 0) return { resolved: value, values: [] };
  const rows = await sealedSecrets(q, names);
  const byName = new Map(rows.map((r) => [r.name, key.open(r.name, r)]));
  const missing = names.filter((n) => !byName.has(n));
  if (missing.length > 0) {
    throw new NovaError(
      "NOVA_SECRET",
      `Secret(s) ${missing.join(", ")} not found. Store them with: novacron exec secret set <name>`,
      { details: { missing } },
    );
  }
  const replace = (v: unknown): unknown => {
    if (typeof v === "string") return v.replace(SECRET_REF, (_m, n: string) => byName.get(n)!);
    if (Array.isArray(v)) return v.map(replace);
    if (v && typeof v === "object")
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, replace(x)]));
    return v;
  };
  return { resolved: replace(value) as T, values: [...byName.values()] };
}
