/**
 * The cluster CA a database belongs to (one row): the first server records its CA's
 * fingerprint, and every server after it must present the same CA, so that replicas never
 * issue host certificates the others refuse.
 */
import { NovaError } from "../../lib/errors.js";
import type { Queryable } from "./db.js";

/** Records `fingerprint` as the database's CA if none is; throws NOVA_CONFIG when another one is. */
export async function claimClusterCa(q: Queryable, fingerprint: string, caHint: string): Promise<void> {
  await q.query("INSERT INTO cluster_ca (id, ca_fingerprint) VALUES (1, $1) ON CONFLICT (id) DO NOTHING", [
    fingerprint,
  ]);
  const { rows } = await q.query<{ ca_fingerprint: string }>(
    "SELECT ca_fingerprint FROM cluster_ca WHERE id = 1",
  );
  const recorded = rows[0]?.ca_fingerprint;
  if (recorded !== fingerprint) {
    throw new NovaError(
      "NOVA_CONFIG",
      `This database belongs to the cluster whose CA is ${recorded}, but this server's CA is ${fingerprint} (${caHint}). A second server (replica) must use the same CA: copy ca.crt and ca.key from the first server's <data dir>/pki/, or pass --ca-cert/--ca-key.`,
      { details: { recorded, presented: fingerprint } },
    );
  }
}
