import { describe, expect, it } from "vitest";
import { backoffMs, DEFAULT_EXEC_CONFIG, resolveExecConfig, stepTimeoutMs } from "./config.js";
import { canTransition, EXEC_STATES, EXEC_TRANSITIONS, type ExecState } from "./states.js";

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
