/**
 * The per-peer path memory: what it keeps, across a restart, within its bounds, and that
 * a damaged file is ignored rather than trusted.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { PathMemory, type RememberedPath } from "./path-memory.js";

const dirs: string[] = [];
const file = () => {
  const d = mkdtempSync(path.join(tmpdir(), "nc-paths-"));
  dirs.push(d);
  return path.join(d, "dwcp", "paths.json");
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const wan = (at: number): RememberedPath => ({
  mode: "internet",
  streams: 12,
  capacityBps: 11_000_000,
  networkBound: true,
  predictedBps: 10_500_000,
  mape: 8.5,
  level: 3,
  rttMs: 50.2,
  at,
});

describe("PathMemory", () => {
  it("recalls what a peer's path sustained, after a restart too", () => {
    const f = file();
    const now = Date.now();
    new PathMemory(f).remember("site-b", wan(now));
    const again = new PathMemory(f);
    expect(again.loadError).toBeNull();
    expect(again.recall("site-b", now)).toEqual(wan(now));
    expect(again.recall("site-c", now)).toBeUndefined();
  });

  it("forgets entries older than maxAgeMs and the oldest peers beyond maxPeers", () => {
    const m = new PathMemory(null, { maxPeers: 2, maxAgeMs: 1000 });
    m.remember("a", wan(0));
    m.remember("b", wan(10));
    m.remember("c", wan(20));
    expect(m.size).toBe(2);
    expect(m.recall("a", 20)).toBeUndefined();
    expect(m.recall("b", 20)).toBeDefined();
    expect(m.recall("c", 2000)).toBeUndefined();
  });

  it("keeps a larger capacity when the new figure is only a lower bound (a capped transfer)", () => {
    const m = new PathMemory(null);
    m.remember("a", wan(0));
    m.remember("a", { ...wan(10), capacityBps: 3_000_000, networkBound: false, streams: 4 });
    expect(m.recall("a", 10)).toMatchObject({ capacityBps: 11_000_000, networkBound: true, streams: 4 });
    m.remember("a", { ...wan(20), capacityBps: 5_000_000, networkBound: true });
    expect(m.recall("a", 20)?.capacityBps).toBe(5_000_000);
  });

  it("refuses a figure that is not one (no capacity, a mode it does not know)", () => {
    const m = new PathMemory(null);
    m.remember("a", { ...wan(0), capacityBps: 0 });
    m.remember("b", { ...wan(0), mode: "lunar" as RememberedPath["mode"] });
    expect(m.size).toBe(0);
  });

  it("ignores a damaged file, says why, and replaces it on the next remember", () => {
    const f = file();
    new PathMemory(f).remember("site-b", wan(Date.now()));
    writeFileSync(f, '{"version":1,"peers":{"site-b":{"mode":"internet"');
    const m = new PathMemory(f);
    expect(m.loadError).toMatch(/paths\.json/);
    expect(m.recall("site-b")).toBeUndefined();
    writeFileSync(f, JSON.stringify({ version: 1, peers: { x: { ...wan(1), streams: -3 } } }));
    expect(new PathMemory(f).loadError).toMatch(/not a path memory file/);
    m.remember("site-c", wan(Date.now()));
    expect(Object.keys(JSON.parse(readFileSync(f, "utf8")).peers)).toEqual(["site-c"]);
  });
});
