import { describe, expect, it } from "vitest";
import { NovaError } from "../lib/errors.js";
import { JobDead } from "./pool.js";
import { classifyStepOutcome, type StepContext, type StepEvent } from "./step-outcome.js";

const step: StepContext = {
  index: 1,
  label: "step 2/3 (call)",
  stepMs: 30_000,
  attempt: 1,
  maxAttempts: 3,
  completedSteps: 0,
  executionId: "e1",
};

const threw = (error: unknown, more: Partial<Extract<StepEvent, { kind: "threw" }>> = {}): StepEvent => ({
  kind: "threw",
  error,
  stop: undefined,
  abandoned: false,
  shutdown: false,
  ...more,
});

describe("classifyStepOutcome", () => {
  it("a step that returned is completed", () => {
    expect(classifyStepOutcome({ kind: "returned" }, step)).toEqual({ kind: "completed" });
  });

  it("a lost lease records nothing, whether the signal said so or the write was refused", () => {
    const lost = new NovaError("NOVA_EXEC_LEASE_LOST", "gone");
    expect(
      classifyStepOutcome(threw(new Error("x"), { stop: { kind: "lease", error: lost } }), step),
    ).toEqual({
      kind: "lost",
    });
    expect(classifyStepOutcome(threw(lost), step)).toEqual({ kind: "lost" });
    // Even while shutting down or cancelled: the lease decides first.
    expect(classifyStepOutcome(threw(lost, { shutdown: true, stop: { kind: "cancel" } }), step).kind).toBe(
      "lost",
    );
  });

  it("a shutdown hands the job back before anything else is decided", () => {
    expect(
      classifyStepOutcome(threw(new Error("aborted"), { shutdown: true, stop: { kind: "cancel" } }), step),
    ).toEqual({
      kind: "shutdown",
    });
  });

  it("a cancel ends the step cancelled, saying whether it was abandoned", () => {
    expect(classifyStepOutcome(threw(new Error("x"), { stop: { kind: "cancel" } }), step)).toEqual({
      kind: "cancelled",
      abandoned: false,
    });
    expect(
      classifyStepOutcome(threw(new Error("x"), { stop: { kind: "cancel" }, abandoned: true }), step),
    ).toEqual({ kind: "cancelled", abandoned: true });
  });

  it("a step past its own limit times out, naming the limit in seconds", () => {
    const o = classifyStepOutcome(
      threw(new Error("x"), { stop: { kind: "step-timeout", ms: 30_000 } }),
      step,
    );
    expect(o.kind).toBe("timed_out");
    if (o.kind !== "timed_out") return;
    expect(o.error.code).toBe("NOVA_EXEC_TIMEOUT");
    expect(o.error.message).toBe("step 2/3 (call) ran past its time limit of 30 s");
    expect(o.error.details).toEqual({ step: 1, limit: "step" });
    expect(o.jobError).toEqual({
      code: "NOVA_EXEC_TIMEOUT",
      message: o.error.message,
      details: o.error.details,
    });
  });

  it("a step stopped by the execution's deadline times out with limit: execution", () => {
    const o = classifyStepOutcome(threw(new Error("x"), { stop: { kind: "deadline" } }), step);
    expect(o).toMatchObject({
      kind: "timed_out",
      error: {
        message: "step 2/3 (call) stopped: the execution's time limit passed",
        details: { limit: "execution" },
      },
    });
  });

  it("a retryable failure with attempts left is retried", () => {
    const err = new Error("connection reset");
    expect(classifyStepOutcome(threw(err), step)).toEqual({ kind: "retry", error: err });
  });

  it("a failure on the last attempt fails the execution, or leaves it partial when a step was done", () => {
    const err = new Error("boom");
    const last = { ...step, attempt: 3 };
    expect(classifyStepOutcome(threw(err), last)).toEqual({ kind: "fail", error: err });
    expect(classifyStepOutcome(threw(err), { ...last, completedSteps: 1 })).toEqual({
      kind: "partial",
      error: err,
    });
  });

  it("a failure that says a retry will not help is final on the first attempt", () => {
    const err = new NovaError("NOVA_EXEC_PLAN", "bad plan");
    expect(err.retryable).toBe(false);
    expect(classifyStepOutcome(threw(err), step)).toEqual({ kind: "fail", error: err });
    const dead = new JobDead("dead", {});
    expect(classifyStepOutcome(threw(dead), { ...step, completedSteps: 2 })).toEqual({
      kind: "partial",
      error: dead,
    });
  });

  it("a busy asset puts the execution back in the queue, unless its deadline passed", () => {
    expect(
      classifyStepOutcome({ kind: "busy", asset: "vm:1", heldBy: "e2", pastDeadline: false }, step),
    ).toEqual({ kind: "requeue-busy", asset: "vm:1", heldBy: "e2" });
    expect(
      classifyStepOutcome({ kind: "busy", asset: "vm:1", heldBy: "e2", pastDeadline: true }, step),
    ).toMatchObject({
      kind: "timed_out",
      error: {
        message:
          "step 2/3 (call) stopped: the execution's time limit passed while it waited for vm:1 (held by execution e2)",
        details: { step: 1, limit: "execution", asset: "vm:1" },
      },
    });
  });

  it("an interrupted step that is not idempotent is not run again: fail, or partial after done steps", () => {
    const o = classifyStepOutcome({ kind: "not-resumable" }, step);
    expect(o).toMatchObject({
      kind: "fail",
      error: { code: "NOVA_EXEC_NOT_IDEMPOTENT", details: { step: 1 } },
    });
    if (o.kind !== "fail") return;
    expect(String((o.error as Error).message)).toContain("novacron exec retry e1");
    expect(o.jobError).toMatchObject({ code: "NOVA_EXEC_NOT_IDEMPOTENT" });
    expect(classifyStepOutcome({ kind: "not-resumable" }, { ...step, completedSteps: 1 }).kind).toBe(
      "partial",
    );
  });
});
