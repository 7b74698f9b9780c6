import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { RevokedScrapers } from "./revoked-scrapers.js";

describe("RevokedScrapers", () => {
  let dir: string | undefined;
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("takes the server's list, keeps it across a restart, and drops malformed entries", async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "nc-revoked-"));
    const first = new RevokedScrapers(dir);
    await first.load();
    expect(first.has("abc")).toBe(false);
    await first.replace(["abc", "DEF", "../x", "12"]);
    expect(first.has("abc")).toBe(true);
    expect(first.has("12")).toBe(true);
    expect(first.has("DEF")).toBe(false);
    const again = new RevokedScrapers(dir);
    await again.load();
    expect(again.has("abc")).toBe(true);
    await again.replace([]);
    expect(again.has("abc")).toBe(false);
    expect(JSON.parse(await readFile(path.join(dir, "revoked-scrapers.json"), "utf8"))).toEqual([]);
  });

  it("starts empty from a damaged file", async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "nc-revoked-"));
    await writeFile(path.join(dir, "revoked-scrapers.json"), "{not json");
    const r = new RevokedScrapers(dir);
    await r.load();
    expect(r.has("abc")).toBe(false);
  });
});
