import { mkdtemp, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { canTransition, EXEC_STATES, EXEC_TRANSITIONS, type ExecState } from "../states/execution.js";
import {
  backoffMs,
  buildExecConfig,
  DEFAULT_EXEC_CONFIG,
  loadExecConfig,
  parseExecConfigFile,
  parseWorkersFlag,
  resolveExecConfig,
  stepTimeoutMs,
} from "./config.js";

describe("retry backoff", () => {
  const b = { baseMs: 1000, maxMs: 60_000, jitter: 0.5 };
  it("doubles per attempt up to the maximum", () => {
    expect([1, 2, 3, 4].map((a) => backoffMs(b, a, () => 0))).toEqual([1000, 2000, 4000, 8000]);
    expect(backoffMs(b, 30, () => 0)).toBe(60_000);
  });
  it("randomises within [1 - jitter, 1] of the delay", () => {
    expect(backoffMs(b, 3, () => 1)).toBe(2000);
    for (let i = 0; i < 100; i++) {
      const d = backoffMs(b, 3);
      expect(d).toBeGreaterThanOrEqual(2000);
      expect(d).toBeLessThanOrEqual(4000);
    }
  });
});

describe("execution config", () => {
  it("merges overrides over the defaults", () => {
    const c = resolveExecConfig({ sla: { fast: { leaseMs: 1000 } }, pool: { maxWorkers: 3 } });
    expect(c.sla.fast.leaseMs).toBe(1000);
    expect(c.sla.fast.maxAttempts).toBe(DEFAULT_EXEC_CONFIG.sla.fast.maxAttempts);
    expect(c.pool.maxWorkers).toBe(3);
  });
  it("refuses a pool whose minimum exceeds its maximum", () => {
    expect(() => resolveExecConfig({ pool: { minWorkers: 5, maxWorkers: 2 } })).toThrow(/minWorkers 5/);
  });
  it("picks a step's own limit, then its kind's, then its class's", () => {
    const c = resolveExecConfig();
    expect(stepTimeoutMs(c, "fast", "wait", 7)).toBe(7000);
    expect(stepTimeoutMs(c, "fast", "vm.migrate", undefined)).toBe(3_600_000);
    expect(stepTimeoutMs(c, "fast", "wait", undefined)).toBe(c.sla.fast.stepTimeoutMs);
  });
});

describe("execution config from defaults, a file and flags", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp("/tmp/nc-exec-cfg-");
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const file = (overrides: object) => ({ path: "/etc/novacron/exec.json", overrides });

  it("lets the file override the defaults and the flags override the file", () => {
    const fromFile = buildExecConfig({ file: file({ pool: { minWorkers: 2, maxWorkers: 4 } }) });
    expect(fromFile.pool).toMatchObject({ minWorkers: 2, maxWorkers: 4 });
    expect(fromFile.pool.pollIntervalMs).toBe(DEFAULT_EXEC_CONFIG.pool.pollIntervalMs);
    const withFlags = buildExecConfig({
      file: file({ pool: { minWorkers: 2, maxWorkers: 4 } }),
      flags: { workersMax: 16 },
    });
    expect(withFlags.pool).toMatchObject({ minWorkers: 2, maxWorkers: 16 });
    expect(buildExecConfig({ flags: { workersMin: 0, workersMax: 1 } }).pool).toMatchObject({
      minWorkers: 0,
      maxWorkers: 1,
    });
    expect(buildExecConfig().pool.maxWorkers).toBe(DEFAULT_EXEC_CONFIG.pool.maxWorkers);
  });

  it("names the flag or file key that made the pool invalid, and how to fix it", () => {
    expect(() => buildExecConfig({ flags: { workersMin: 9 } })).toThrow(
      /minWorkers 9 \(from --exec-workers-min\) is larger than maxWorkers 8 \(from the default\)\. Lower --exec-workers-min or raise --exec-workers-max/,
    );
    expect(() =>
      buildExecConfig({ file: file({ pool: { maxWorkers: 2 } }), flags: { workersMin: 3 } }),
    ).toThrow(/\(from --exec-workers-min\) .* \(from pool\.maxWorkers in \/etc\/novacron\/exec\.json\)/);
    expect(() => buildExecConfig({ flags: { workersMax: 0 } })).toThrow(
      /maxWorkers must be a whole number >= 1, got 0 \(from --exec-workers-max\)/,
    );
    expect(() => buildExecConfig({ file: file({ sla: { fast: { leaseMs: 100 } } }) })).toThrow(
      /SLA class fast: leaseMs must be >= 300 .* fix sla\.fast in \/etc\/novacron\/exec\.json/,
    );
  });

  it("parses worker flags and refuses anything but a whole number in range", () => {
    expect(parseWorkersFlag("4", "--exec-workers-max", 1)).toBe(4);
    expect(parseWorkersFlag("0", "--exec-workers-min", 0)).toBe(0);
    for (const bad of ["", "x", "1.5", "-1", "0x10", "1e3"]) {
      expect(() => parseWorkersFlag(bad, "--exec-workers-min", 0)).toThrow(
        /--exec-workers-min must be a whole number >= 0/,
      );
    }
    expect(() => parseWorkersFlag("0", "--exec-workers-max", 1)).toThrow(
      /--exec-workers-max must be a whole number >= 1, got "0"/,
    );
  });

  it("refuses a config file with a misspelt key, a bad value or bad JSON, naming the file and key", () => {
    expect(() => parseExecConfigFile("exec.json", '{"pool": {"minWorker": 2}}')).toThrow(
      /exec\.json: pool\.minWorker is not a setting/,
    );
    expect(() => parseExecConfigFile("exec.json", '{"sla": {"fast": {"leaseMs": "5s"}}}')).toThrow(
      /exec\.json: sla\.fast\.leaseMs/,
    );
    expect(() => parseExecConfigFile("exec.json", '{"backoff": {"jitter": 2}}')).toThrow(
      /exec\.json: backoff\.jitter/,
    );
    expect(() => parseExecConfigFile("exec.json", "{pool:")).toThrow(/exec\.json is not valid JSON/);
    expect(parseExecConfigFile("exec.json", '{"retention": {"finishedMs": 3600000}}')).toEqual({
      retention: { finishedMs: 3_600_000 },
    });
  });

  it("loads a file from disk and layers flags over it", async () => {
    const p = path.join(dir, "exec.json");
    await writeFile(
      p,
      JSON.stringify({ pool: { minWorkers: 3, maxWorkers: 5 }, sla: { fast: { maxAttempts: 9 } } }),
    );
    const cfg = await loadExecConfig(p, { workersMin: 1 });
    expect(cfg.pool).toMatchObject({ minWorkers: 1, maxWorkers: 5 });
    expect(cfg.sla.fast.maxAttempts).toBe(9);
    await expect(loadExecConfig(path.join(dir, "missing.json"))).rejects.toThrow(
      /Failed reading execution config .*missing\.json/,
    );
  });
});

describe("the execution state machine", () => {
  const states = Object.keys(EXEC_STATES) as ExecState[];
  it("never leaves completed, cancelled or rejected", () => {
    for (const from of ["completed", "cancelled", "rejected"] as const)
      for (const to of states) expect(canTransition(from, to)).toBe(false);
  });
  it("allows exactly the documented transitions", () => {
    const allowed = states.flatMap((f) => EXEC_TRANSITIONS[f].map((t) => `${f}->${t}`)).sort();
    expect(allowed).toEqual(
      [
        "pending_approval->approved",
        "pending_approval->rejected",
        "pending_approval->timed_out",
        "pending_approval->cancelled",
        "approved->queued",
        "approved->cancelled",
        "queued->running",
        "queued->cancelled",
        "queued->queued",
        "running->completed",
        "running->failed",
        "running->partial",
        "running->cancelled",
        "running->timed_out",
        "running->queued",
        "running->pending_approval",
        "failed->queued",
        "timed_out->queued",
        "partial->queued",
      ].sort(),
    );
    expect(canTransition("queued", "completed")).toBe(false);
    expect(canTransition("pending_approval", "running")).toBe(false);
  });
});
