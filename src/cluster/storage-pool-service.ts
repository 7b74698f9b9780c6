/**
 * Storage pools: directories every host mounts at the same path (NFS or the like), where
 * VMs that must survive their host (`ha: restart`) keep their disks. Adding a pool writes
 * its marker, `<path>/.novacron-pool` holding the pool's id, when the server sees the
 * directory too; agents report a pool only when they read the marker back, so a host
 * whose mount is missing (an empty directory at that path) never counts as seeing it.
 */
import { randomUUID } from "node:crypto";
import { mkdir, open, readFile, rename, stat } from "node:fs/promises";
import path from "node:path";
import { NovaError } from "../lib/errors.js";
import {
  deleteStoragePool,
  getStoragePool,
  insertStoragePool,
  listStoragePools,
  type StoragePoolRecord,
} from "./store/storage-pools.js";
import type { Store } from "./store/store.js";

/** The marker file's name inside a pool's directory. */
export const POOL_MARKER = ".novacron-pool";

/** What adding a pool did about its marker. */
export interface PoolMarker {
  path: string;
  content: string;
  written: boolean;
}

/** Storage pool operations. */
export class StoragePoolService {
  constructor(private readonly store: Store) {}

  /** Every pool. */
  list(): Promise<StoragePoolRecord[]> {
    return listStoragePools(this.store.read);
  }

  /** One pool by id or name. */
  get(idOrName: string): Promise<StoragePoolRecord> {
    return getStoragePool(this.store.read, idOrName);
  }

  /**
   * Adds a pool and, when the directory is mounted on the server too, writes its marker.
   * A directory holding another pool's marker is refused (two pools must not share disks).
   */
  async add(input: { name: string; path: string }): Promise<{ pool: StoragePoolRecord; marker: PoolMarker }> {
    const dir = checkPoolPath(input.path);
    const id = randomUUID();
    const markerPath = path.join(dir, POOL_MARKER);
    const existing = await readFile(markerPath, "utf8").then(
      (t) => t.trim(),
      () => undefined,
    );
    if (existing !== undefined) {
      throw new NovaError(
        "NOVA_CONFLICT",
        `Directory ${dir} already holds the marker of storage pool ${existing} (${markerPath}). Use another directory, or remove that file if that pool is gone for good.`,
        { details: { path: dir, marker: existing } },
      );
    }
    await this.store.write(async (tx, emit) => {
      emit((await insertStoragePool(tx, { id, name: input.name, path: dir })).event);
    });
    const written = await writeMarker(dir, id).catch(() => false);
    return { pool: await this.get(id), marker: { path: markerPath, content: id, written } };
  }

  /** Removes a pool no VM uses (NOVA_STORAGE_POOL_IN_USE otherwise); its directory is left as it is. */
  async remove(idOrName: string): Promise<StoragePoolRecord> {
    return this.store.write(async (tx, emit) => {
      const pool = await getStoragePool(tx, idOrName);
      emit(await deleteStoragePool(tx, pool));
      return pool;
    });
  }
}

/** A pool path must be absolute and normal (no `..`, no trailing slash): the same string on every host. */
export function checkPoolPath(p: string): string {
  const normal = path.posix.normalize(p);
  if (
    !path.posix.isAbsolute(p) ||
    normal !== p.replace(/\/+$/, "") ||
    p.split("/").includes("..") ||
    normal === "/"
  ) {
    throw new NovaError(
      "NOVA_BAD_REQUEST",
      `Storage pool path "${p}" must be an absolute, normal directory path other than / (e.g. /mnt/novacron-pool), the same on every host.`,
      { details: { path: p } },
    );
  }
  return normal;
}

/** Writes `<dir>/.novacron-pool` (temp, fsync, rename) when `dir` exists here; false when it does not. */
async function writeMarker(dir: string, id: string): Promise<boolean> {
  const st = await stat(dir).catch(() => undefined);
  if (!st?.isDirectory()) return false;
  await mkdir(path.join(dir, "vms"), { recursive: true });
  const file = path.join(dir, POOL_MARKER);
  const tmp = `${file}.${process.pid}.tmp`;
  const fh = await open(tmp, "w", 0o644);
  try {
    await fh.writeFile(`${id}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
  return true;
}
