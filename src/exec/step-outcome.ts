/**
 * What a step attempt comes to, decided without side effects: from what happened to the
 * step (it returned, threw, found an asset busy, or cannot be resumed), why its signal
 * fired, and the job's attempts, `classifyStepOutcome` says what the runner records and
 * how the job ends. The runner (runner.ts) only carries the decision out, so every case
 * has a unit test (step-outcome.test.ts).
 */
import { NovaError } from "../lib/errors.js";
import { willRetry } from "./pool.js";

/** Why a step's signal fired. */
export type StopReason =
  | { kind: "cancel" }
  | { kind: "step-timeout"; ms: number }
  | { kind: "deadline" }
  | { kind: "lease"; error: unknown };

/** What happened to the step. */
export type StepEvent =
  /** The step kind returned a result. */
  | { kind: "returned" }
  /** The step (or recording its start) threw; `stop` says why its signal fired, if it did. */
  | { kind: "threw"; error: unknown; stop: StopReason | undefined; abandoned: boolean; shutdown: boolean }
  /** The step's asset is held by another execution. */
  | { kind: "busy"; asset: string; heldBy: string; pastDeadline: boolean }
  /** A worker failure interrupted the step, and its kind may not run twice. */
  | { kind: "not-resumable" };

/** What the attempt knows when it classifies. */
export interface StepContext {
  /** 0-based index of the step. */
  index: number;
  /** "step 2/3 (name)", for messages. */
  label: string;
  /** The step's time limit. */
  stepMs: number;
  /** The claim's attempt number and the job's limit (the retry policy's input). */
  attempt: number;
  maxAttempts: number;
  /** Steps of the execution completed so far. */
  completedSteps: number;
  /** The execution's id (for the resume hint). */
  executionId: string;
}

/**
 * What the runner does about a step:
 * - completed: record the step done and go on;
 * - lost / shutdown: record nothing and rethrow (the lease is gone; or the pool is
 *   stopping and hands the job back);
 * - cancelled: the step and the execution end cancelled;
 * - timed_out: both end timed out, the job goes to the dead-letter queue;
 * - retry: the step goes back to pending, the execution to queued, the job retries with backoff;
 * - fail / partial: the step fails and the execution ends failed (no step done) or
 *   partial (some done); the job goes to the dead-letter queue;
 * - requeue-busy: the execution waits in the queue for the asset (no attempt used up).
 *
 * `error` is what the step and the execution record; `jobError`, when set, is the job's
 * dead-letter record as is (the runner's own errors), else the runner derives it from `error`.
 */
export type StepOutcome =
  | { kind: "completed" }
  | { kind: "lost" }
  | { kind: "shutdown" }
  | { kind: "cancelled"; abandoned: boolean }
  | { kind: "timed_out"; error: NovaError; jobError: Record<string, unknown> }
  | { kind: "retry"; error: unknown }
  | { kind: "fail" | "partial"; error: unknown; jobError?: Record<string, unknown> }
  | { kind: "requeue-busy"; asset: string; heldBy: string };

/** Decides a step's outcome; pure. */
export function classifyStepOutcome(event: StepEvent, step: StepContext): StepOutcome {
  switch (event.kind) {
    case "returned":
      return { kind: "completed" };
    case "busy": {
      if (!event.pastDeadline) return { kind: "requeue-busy", asset: event.asset, heldBy: event.heldBy };
      return timedOut(
        new NovaError(
          "NOVA_EXEC_TIMEOUT",
          `${step.label} stopped: the execution's time limit passed while it waited for ${event.asset} (held by execution ${event.heldBy})`,
          { details: { step: step.index, limit: "execution", asset: event.asset } },
        ),
      );
    }
    case "not-resumable": {
      const error = new NovaError(
        "NOVA_EXEC_NOT_IDEMPOTENT",
        `${step.label} was interrupted by a worker failure and is not idempotent, so it is not run again. Check what it did, then: novacron exec retry ${step.executionId}`,
        { details: { step: step.index } },
      );
      return { kind: failedKind(step), error, jobError: plainRecord(error) };
    }
    case "threw": {
      const { error, stop } = event;
      if (stop?.kind === "lease" || (error instanceof NovaError && error.code === "NOVA_EXEC_LEASE_LOST"))
        return { kind: "lost" };
      if (event.shutdown) return { kind: "shutdown" };
      if (stop?.kind === "cancel") return { kind: "cancelled", abandoned: event.abandoned };
      if (stop?.kind === "step-timeout" || stop?.kind === "deadline") {
        return timedOut(
          new NovaError(
            "NOVA_EXEC_TIMEOUT",
            stop.kind === "deadline"
              ? `${step.label} stopped: the execution's time limit passed`
              : `${step.label} ran past its time limit of ${Math.round(step.stepMs / 1000)} s`,
            { details: { step: step.index, limit: stop.kind === "deadline" ? "execution" : "step" } },
          ),
        );
      }
      if (willRetry({ attempt: step.attempt, maxAttempts: step.maxAttempts }, error))
        return { kind: "retry", error };
      return { kind: failedKind(step), error };
    }
  }
}

function failedKind(step: StepContext): "fail" | "partial" {
  return step.completedSteps > 0 ? "partial" : "fail";
}

function timedOut(error: NovaError): StepOutcome {
  return { kind: "timed_out", error, jobError: plainRecord(error) };
}

function plainRecord(err: NovaError): Record<string, unknown> {
  return { code: err.code, message: err.message, details: err.details };
}
