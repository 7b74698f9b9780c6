/**
 * A daemon's data dir holds keys, the database and VM disks, so only its owner may read
 * it: the dir is made (or tightened to) 0700 and everything in it loses its group and
 * other bits, at every start. Tightening an existing dir is logged, since it means
 * something (an older version, a restore, a hand-made dir) had left it open.
 */
import { chmod, lstat, mkdir, readdir } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";

/** Creates `dir` 0700, or tightens it and its contents; returns how many entries were tightened. */
export async function secureDataDir(dir: string, log?: Pick<Logger, "warn">): Promise<number> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tightened: string[] = [];
  const st = await lstat(dir);
  if ((st.mode & 0o077) !== 0) {
    await chmod(dir, 0o700);
    tightened.push(dir);
  }
  await tightenTree(dir, tightened);
  if (tightened.length > 0) {
    log?.warn(
      { dir, count: tightened.length, first: tightened.slice(0, 5) },
      "data dir was readable by other users; removed group and other permissions",
    );
  }
  return tightened.length;
}

/** Removes group/other bits below `dir` (symlinks are left alone: they are not followed). */
export async function tightenTree(dir: string, tightened: string[] = []): Promise<string[]> {
  let entries: import("node:fs").Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return tightened;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isSymbolicLink()) continue;
    let st: import("node:fs").Stats;
    try {
      st = await lstat(p);
    } catch {
      continue; // gone meanwhile
    }
    if ((st.mode & 0o077) !== 0) {
      await chmod(p, st.mode & 0o700);
      tightened.push(p);
    }
    if (e.isDirectory()) await tightenTree(p, tightened);
  }
  return tightened;
}
