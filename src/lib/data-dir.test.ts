import { chmod, lstat, mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { secureDataDir } from "./data-dir.js";

const mode = async (p: string) => (await lstat(p)).mode & 0o777;

describe("secureDataDir", () => {
  let root = "";
  afterEach(async () => {
    if (root) await rm(root, { recursive: true, force: true });
  });

  it("creates a missing dir 0700 and tightens an open one and everything in it, leaving symlink targets alone", async () => {
    root = await mkdtemp(path.join(os.tmpdir(), "nc-datadir-"));
    const fresh = path.join(root, "fresh");
    expect(await secureDataDir(fresh)).toBe(0);
    expect(await mode(fresh)).toBe(0o700);

    const open = path.join(root, "open");
    await mkdir(path.join(open, "db"), { recursive: true });
    await chmod(open, 0o755);
    await chmod(path.join(open, "db"), 0o777);
    await writeFile(path.join(open, "db", "PG_VERSION"), "17", { mode: 0o666 });
    await chmod(path.join(open, "db", "PG_VERSION"), 0o666);
    const outside = path.join(root, "outside");
    await writeFile(outside, "x");
    await chmod(outside, 0o644);
    await symlink(outside, path.join(open, "link"));
    const warnings: unknown[] = [];
    const n = await secureDataDir(open, { warn: (o: unknown) => warnings.push(o) } as never);
    expect(n).toBe(3);
    expect(warnings).toHaveLength(1);
    expect(await mode(open)).toBe(0o700);
    expect(await mode(path.join(open, "db"))).toBe(0o700);
    expect(await mode(path.join(open, "db", "PG_VERSION"))).toBe(0o600);
    expect(await mode(outside)).toBe(0o644);
    expect(await secureDataDir(open)).toBe(0);
  });
});
