import { randomBytes } from "node:crypto";
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { pageHash } from "./page.js";
import { PageCache } from "./page-cache.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tmp(): string {
  const d = mkdtempSync("/tmp/nc-dwcp-cache-");
  dirs.push(d);
  return d;
}

describe("page cache", () => {
  it("persists pages across reopen and evicts the least recently used past its cap", () => {
    const dir = tmp();
    const pages = Array.from({ length: 5 }, () => randomBytes(4096));
    const c = new PageCache(dir, 4 * 4096);
    for (const p of pages.slice(0, 4)) c.put(pageHash(p), p);
    expect(c.get(pageHash(pages[0]!))!.equals(pages[0]!)).toBe(true); // 0 becomes most recent
    c.put(pageHash(pages[4]!), pages[4]!); // evicts 1
    expect(c.has(pageHash(pages[1]!))).toBe(false);
    c.close();
    const again = new PageCache(dir, 4 * 4096);
    for (const i of [0, 2, 3, 4]) expect(again.get(pageHash(pages[i]!))!.equals(pages[i]!)).toBe(true);
    expect(again.inventory().length).toBe(4 * 8);
    again.close();
  });

  it("serves pages whose writes are still in flight, and has them all on disk after close", async () => {
    const dir = tmp();
    // 1000 pages: runs of 64 go to the disk off the event loop while more arrive.
    const pages = Array.from({ length: 1000 }, () => randomBytes(4096));
    const c = new PageCache(dir, 2000 * 4096);
    for (const p of pages) c.put(pageHash(p), p);
    for (const p of pages) expect(c.get(pageHash(p))!.equals(p)).toBe(true);
    // Some writes land in between, some not: either way every page reads back the same.
    await new Promise((r) => setImmediate(r));
    for (const p of pages.slice(0, 100)) expect(c.get(pageHash(p))!.equals(p)).toBe(true);
    c.close();
    const again = new PageCache(dir, 2000 * 4096);
    for (const p of pages) expect(again.get(pageHash(p))!.equals(p)).toBe(true);
    expect(again.stats().corrupt).toBe(0);
    again.close();
  });

  it("never returns corrupted bytes: a damaged slot is a miss", async () => {
    const dir = tmp();
    const p = randomBytes(4096);
    const c = new PageCache(dir, 1 << 20);
    c.put(pageHash(p), p);
    c.close();
    await c.whenClosed();
    const fd = openSync(join(dir, "pages.dat"), "r+");
    writeSync(fd, Buffer.from("garbage"), 0, 7, 100);
    closeSync(fd);
    const again = new PageCache(dir, 1 << 20);
    expect(again.get(pageHash(p))).toBeNull();
    expect(again.stats().corrupt).toBe(1);
    again.close();
  });

  it("starts empty when the index is damaged", () => {
    const dir = tmp();
    const c = new PageCache(dir, 1 << 20);
    const p = randomBytes(4096);
    c.put(pageHash(p), p);
    c.close();
    writeFileSync(join(dir, "index.dat"), Buffer.alloc(64, 1));
    const again = new PageCache(dir, 1 << 20);
    expect(again.openWarning).toMatch(/format|checksum/);
    expect(again.stats().pages).toBe(0);
    again.close();
  });
});
