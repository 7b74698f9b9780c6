/**
 * The secrets key a database belongs to (one row, SQL 000016): the first server seals a
 * known value with its key, and every server after it (a replica, a restart with another
 * NOVACRON_SECRETS_KEY) must open it, so that a replica with the wrong key is refused at
 * start rather than failing later on every sealed secret and second factor.
 */
import { NovaError } from "../../lib/errors.js";
import type { SecretKey } from "../../security/secret-key.js";
import type { Queryable } from "./db.js";

/** What is sealed, bound to this row's purpose. */
const CHECK_NAME = "novacron.secrets-key-check";
const CHECK_VALUE = "the secrets key of this cluster";

/** Records the key's check value if none is; throws NOVA_CONFIG when this key cannot open the recorded one. */
export async function claimSecretsKey(q: Queryable, key: SecretKey, keyHint: string): Promise<void> {
  const sealed = key.seal(CHECK_NAME, CHECK_VALUE);
  await q.query(
    "INSERT INTO secrets_key_check (id, iv, tag, ciphertext) VALUES (1, $1, $2, $3) ON CONFLICT (id) DO NOTHING",
    [sealed.iv, sealed.tag, sealed.ciphertext],
  );
  const { rows } = await q.query<{ iv: string; tag: string; ciphertext: string }>(
    "SELECT iv, tag, ciphertext FROM secrets_key_check WHERE id = 1",
  );
  let opened: string | undefined;
  try {
    opened = key.open(CHECK_NAME, rows[0]!);
  } catch {
    opened = undefined;
  }
  if (opened !== CHECK_VALUE) {
    throw new NovaError(
      "NOVA_CONFIG",
      `This database's secrets were sealed with another secrets key than this server's (${keyHint}). A second server (replica) must use the same key: set NOVACRON_SECRETS_KEY to the first server's key on every replica, or copy the first server's <data dir>/secrets.key.`,
    );
  }
}
