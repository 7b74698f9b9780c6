/**
 * Which storage pools this host sees: a pool counts only when `<path>/.novacron-pool`
 * holds the pool's id (cluster/storage-pool-service.ts writes it), so an empty directory
 * where the shared mount is missing never passes for the pool.
 */
import { open } from "node:fs/promises";
import path from "node:path";
import { NovaError } from "../lib/errors.js";

/** The marker file's name (the same as the server's POOL_MARKER). */
const POOL_MARKER = ".novacron-pool";

/** Reads at most 128 bytes of a pool's marker; undefined when it cannot be read. */
async function readMarker(dir: string): Promise<string | undefined> {
  try {
    const fh = await open(path.join(dir, POOL_MARKER), "r");
    try {
      const buf = Buffer.alloc(128);
      const { bytesRead } = await fh.read(buf, 0, 128, 0);
      return buf.subarray(0, bytesRead).toString("utf8").trim();
    } finally {
      await fh.close();
    }
  } catch {
    return undefined;
  }
}

/** The ids of the pools whose marker this host reads back. */
export async function visiblePools(pools: readonly { id: string; path: string }[]): Promise<string[]> {
  const seen = await Promise.all(
    pools.map(async (p) => ((await readMarker(p.path)) === p.id ? p.id : undefined)),
  );
  return seen.filter((id): id is string => id !== undefined);
}

/** Throws NOVA_UNPROCESSABLE unless this host sees the pool (its marker holds its id). */
export async function checkPoolMarker(pool: { id: string; path: string }): Promise<void> {
  const got = await readMarker(pool.path);
  if (got === pool.id) return;
  throw new NovaError(
    "NOVA_UNPROCESSABLE",
    `storage pool ${pool.id} is not mounted on this host: ${path.join(pool.path, POOL_MARKER)} ${got === undefined ? "cannot be read" : `holds ${got}`}`,
    { details: { storagePool: pool.id, path: pool.path } },
  );
}
