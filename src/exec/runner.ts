/**
 * Runs one execution as a job of the `execution` queue: each claim is an
 * `ExecutionAttempt`, which re-checks authorisation, takes the plan's asset mutexes, then
 * runs the steps in order from the first one not completed, recording each step's state,
 * progress, checkpoint, result and log. What a step's end means (retry, fail, time out,
 * wait for an asset…) is decided by the pure `classifyStepOutcome` (step-outcome.ts); the
 * attempt only records it. Every write is fenced by the job's lease (a worker whose lease
 * was reaped changes nothing), and every state change starts from the state the database
 * returned for the previous one. Cancel,
 * step and execution time limits and lease loss all arrive as one AbortSignal on the
 * running step; cancel waits `cancelGraceMs` for the step to stop before abandoning it.
 */
import type { Logger } from "pino";
import type { ClusterEvent } from "../api/types/events.js";
import type { PlanStep } from "../api/types/executions.js";
import type { Queryable } from "../cluster/store/db.js";
import {
  acquireAssets,
  lockOrder,
  type MutexConflict,
  releaseAssets,
  renewAssets,
} from "../cluster/store/exec-locks.js";
import {
  appendLogs,
  type ExecutionRecord,
  isCancelRequested,
  lockExecution,
  moveExecution,
  noteQueuedReason,
  type StepUpdate,
  setCurrentStep,
  type TransitionExtra,
  transitionExecution,
  transitionStep,
  updateStep,
} from "../cluster/store/executions.js";
import { type ClaimedJob, holdJobLease } from "../cluster/store/executions-queue.js";
import type { Store } from "../cluster/store/store.js";
import { describeError, NovaError } from "../lib/errors.js";
import { contextFromTraceparent, inSpan } from "../lib/tracing.js";
import type { ExecState } from "../states/execution.js";
import { STEP_DONE, type StepState } from "../states/step.js";
import { type ExecConfig, type SlaClass, stepTimeoutMs } from "./config.js";
import { ExecLogger } from "./exec-log.js";
import { Masker } from "./masker.js";
import type { WakeChannel } from "./notify.js";
import { type JobContext, JobDead, JobDeferred } from "./pool.js";
import { assertMayRun, currentPrincipal } from "./rbac.js";
import { resolveSecrets, type SecretKey } from "./secrets.js";
import { classifyStepOutcome, type StepContext, type StepOutcome, type StopReason } from "./step-outcome.js";
import { STEP_KINDS } from "./steps/registry.js";
import type { StepServices } from "./steps/step.js";

/** The queue executions run on. */
export const EXECUTION_QUEUE = "execution";

/** Step timings for metrics. */
export interface RunnerObserver {
  stepFinished?(kind: string, outcome: string, ms: number): void;
}

/** What the runner needs. */
export interface RunnerDeps {
  store: Store;
  config: ExecConfig;
  secretKey: SecretKey;
  wake?: WakeChannel;
  services: StepServices;
  log?: Logger;
  observer?: RunnerObserver;
}

class MutexBusy extends Error {
  constructor(
    readonly asset: string,
    readonly heldBy: string,
  ) {
    super(`asset ${asset} is held by execution ${heldBy}`);
  }
}

/** A fenced write: runs `fn` in a transaction only while this attempt still holds the job's lease. */
type Fenced = <T>(fn: (tx: Queryable, emit: (e: ClusterEvent) => void) => Promise<T>) => Promise<T>;

/** Runs executions. */
export class ExecutionRunner {
  constructor(private readonly deps: RunnerDeps) {}

  /** The job handler for the execution queue. */
  readonly handle = async (job: ClaimedJob, ctx: JobContext): Promise<void> => {
    const attempt = await ExecutionAttempt.begin(this.deps, job, ctx);
    if (!attempt) return;
    // One span per attempt, continuing the trace of the request that submitted it.
    await inSpan(
      "execution",
      {
        "novacron.execution.id": attempt.id,
        "novacron.execution.attempt": job.attempt,
        "novacron.exec.worker": ctx.workerId,
      },
      () => attempt.run(),
      contextFromTraceparent(attempt.traceParent),
    );
  };
}

/**
 * One attempt at an execution: the job claim it runs under (whose lease fences every
 * write it makes), the execution as this attempt last wrote it, the mutexes it holds,
 * its masker and log. `begin` starts it (or says there is nothing to run); `run` runs the
 * steps, asking `classifyStepOutcome` what each step's end means and recording that.
 */
class ExecutionAttempt {
  private readonly masker = new Masker();
  private readonly logger: ExecLogger;
  private readonly cancel = new AbortController();
  private readonly limits: ExecConfig["sla"][SlaClass];
  private completedSteps: number;

  private constructor(
    private readonly deps: RunnerDeps,
    private readonly job: ClaimedJob,
    private readonly ctx: JobContext,
    private readonly fenced: Fenced,
    /** The execution as this attempt last moved it (its state is the next move's from-state). */
    private e: ExecutionRecord,
    /** Whose mutexes this attempt holds: a step's index, or "all" (lock: execution). */
    private held: Held,
  ) {
    this.limits = deps.config.sla[e.sla];
    this.completedSteps = e.steps.filter((s) => s.state === "completed").length;
    this.logger = new ExecLogger(deps.store, e.id, this.masker, (lines) =>
      fenced((tx) => appendLogs(tx, e.id, lines)),
    );
  }

  /**
   * Starts the attempt: still runnable? still allowed? the first step's asset mutexes
   * free? Undefined when there is nothing to run (it ended, or was cancelled before it
   * started); JobDeferred when an asset is busy; JobDead when the submitter may no
   * longer run it.
   */
  static async begin(
    deps: RunnerDeps,
    job: ClaimedJob,
    ctx: JobContext,
  ): Promise<ExecutionAttempt | undefined> {
    const executionId = String(job.payload.executionId);
    const fenced: Fenced = (fn) =>
      deps.store.write(async (tx, emit) => {
        if (!(await holdJobLease(tx, ctx.workerId, job))) {
          throw new NovaError(
            "NOVA_EXEC_LEASE_LOST",
            `Job ${job.id} attempt ${job.attempt} is no longer ours`,
          );
        }
        return fn(tx, emit);
      });
    let held: Held;
    try {
      const started = await fenced(async (tx, emit) => {
        const e = await lockExecution(tx, executionId);
        if (e.state !== "queued" && e.state !== "running") return undefined;
        if (e.cancelRequested) {
          emit(await transitionExecution(tx, e, "cancelled", "cancelled before it started"));
          await releaseAssets(tx, e.id);
          return undefined;
        }
        assertMayRun(await currentPrincipal(tx, { kind: e.actorKind, id: e.actorId }), e.plan, e.id);
        const limits = deps.config.sla[e.sla];
        const deadline = e.deadlineAt
          ? new Date(e.deadlineAt)
          : new Date(
              Date.now() + (e.plan.timeouts?.executionSeconds ?? limits.executionTimeoutMs / 1000) * 1000,
            );
        // The mutexes of the first step to run (all of the plan's with lock: execution).
        // Taken before the state changes, so a busy asset rolls everything back and the job
        // just waits in the queue. Past the deadline nothing is waited for: the step loop
        // ends the run as timed out.
        const first = firstPendingStep(e);
        const want = lockSet(e, first);
        const conflict =
          want === undefined ? undefined : await takeLocks(tx, e.id, ctx.workerId, want, limits.leaseMs);
        if (conflict) {
          if (deadline.getTime() > Date.now()) throw new MutexBusy(conflict.asset, conflict.heldBy);
          // Past the deadline: hold nothing (acquireAssets may have taken some before the
          // busy one); the step loop records the timeout.
          await releaseAssets(tx, e.id);
        }
        held = conflict || want === undefined ? undefined : e.lock === "execution" ? "all" : first;
        let from: ExecutionRecord = e;
        if (from.state === "running") {
          // The previous attempt ended without saying so (handed back, or reaped before
          // the reaper's note was written): record that it is being resumed.
          const requeued = await moveExecution(
            tx,
            from,
            "queued",
            "previous attempt was interrupted; resuming",
          );
          emit(requeued.event);
          from = requeued.execution;
        }
        const running = await moveExecution(
          tx,
          from,
          "running",
          `attempt ${job.attempt}/${job.maxAttempts} on worker ${ctx.workerId}`,
          { startedNow: true, deadlineAt: deadline, approvalExpiresAt: null },
        );
        emit(running.event);
        return running.execution;
      });
      return started && new ExecutionAttempt(deps, job, ctx, fenced, started, held);
    } catch (err) {
      if (err instanceof MutexBusy) {
        const reason = `waiting for ${err.asset}: held by execution ${err.heldBy}`;
        await fenced((tx) => noteQueuedReason(tx, executionId, reason)).catch(() => {});
        throw new JobDeferred(err.message, 1000);
      }
      if (err instanceof NovaError && err.code === "NOVA_FORBIDDEN") {
        await ExecutionAttempt.refuse(fenced, executionId, err).catch(() => {});
        throw new JobDead(err.message, { code: err.code, message: err.message });
      }
      throw err;
    }
  }

  /** Ends an execution its submitter may no longer run as failed. */
  private static async refuse(fenced: Fenced, executionId: string, err: NovaError): Promise<void> {
    await fenced(async (tx, emit) => {
      let e: ExecutionRecord = await lockExecution(tx, executionId);
      if (e.state === "queued") {
        const checking = await moveExecution(tx, e, "running", "checking permissions");
        emit(checking.event);
        e = checking.execution;
      }
      emit(
        await transitionExecution(tx, e, "failed", err.message, {
          data: { error: { code: err.code, message: err.message } },
        }),
      );
      await releaseAssets(tx, e.id);
    });
  }

  /** The execution this attempt runs. */
  get id(): string {
    return this.e.id;
  }

  /** The trace its submission belongs to (null: not traced). */
  get traceParent(): string | null {
    return this.e.traceParent;
  }

  /** Runs the steps; keeps the asset leases renewed and watches for cancel meanwhile. */
  async run(): Promise<void> {
    const id = this.e.id;
    const offCancel = this.deps.wake?.onCancel((c) => {
      if (c === id) this.cancel.abort();
    });
    const keepAlive = setInterval(
      () => {
        void (async () => {
          try {
            await this.fenced((tx) => renewAssets(tx, id, this.limits.leaseMs));
            if (await isCancelRequested(this.deps.store.read, id)) this.cancel.abort();
          } catch {
            // The pool's lease renewal decides whether we still own the job.
          }
        })();
      },
      Math.max(100, Math.min(1000, this.limits.leaseMs / 3)),
    );
    keepAlive.unref();
    try {
      await this.runSteps();
    } finally {
      clearInterval(keepAlive);
      offCancel?.();
      await this.logger.flush(true);
    }
  }

  private async runSteps(): Promise<void> {
    const { job, ctx, logger } = this;
    const total = this.e.plan.steps.length;
    logger.line(null, `attempt ${job.attempt}/${job.maxAttempts} started on ${ctx.workerId}`);
    for (let i = 0; i < total; i++) {
      const def = this.e.plan.steps[i]!;
      const outcome = await inSpan(
        `step ${def.kind}`,
        { "novacron.execution.step": i, "novacron.execution.step_name": this.e.steps[i]?.name },
        () => this.runStep(i),
      );
      if (outcome === "stop") return;
    }
    logger.line(null, `completed: all ${total} steps done`);
    await logger.flush(true);
    await this.fenced(async (tx, emit) => {
      emit(await this.move(tx, "completed", `all ${total} steps completed`, { currentStep: total }));
      await releaseAssets(tx, this.e.id);
    });
    this.deps.wake?.wakeJobs(EXECUTION_QUEUE);
  }

  /** Runs step `i`: "next" when it is done (or was already), "stop" when the attempt ends quietly. */
  private async runStep(i: number): Promise<"next" | "stop"> {
    const { e, logger, masker, limits, ctx } = this;
    const def = e.plan.steps[i]!;
    const row = e.steps[i]!;
    if (STEP_DONE.includes(row.state)) return "next";
    const label = `step ${i + 1}/${e.plan.steps.length} (${row.name})`;
    const stepMs = stepTimeoutMs(this.deps.config, e.sla, def.kind, def.timeoutSeconds);
    // The step's state as this attempt last wrote it (the from-state of its next move).
    let at: StepState = row.state;
    const context = (): StepContext => ({
      index: i,
      label,
      stepMs,
      attempt: this.job.attempt,
      maxAttempts: this.job.maxAttempts,
      completedSteps: this.completedSteps,
      executionId: e.id,
    });

    if (def.kind === "approval") {
      const expires = new Date(
        Date.now() + (e.plan.timeouts?.approvalSeconds ?? limits.approvalTimeoutMs / 1000) * 1000,
      );
      logger.line(i, `${label}: waiting for approval until ${expires.toISOString()}`);
      await logger.flush(true);
      await this.fenced(async (tx, emit) => {
        emit(
          await transitionStep(tx, e.id, i, at, "waiting_approval", {
            message: masker.mask(def.message ?? "waiting for approval"),
          }),
        );
        emit(
          await this.move(tx, "pending_approval", `${label} waits for approval`, {
            currentStep: i,
            approvalExpiresAt: expires,
          }),
        );
        // Waiting for a person may take days: do not keep the assets locked meanwhile.
        await releaseAssets(tx, e.id);
      });
      this.deps.wake?.wakeJobs(EXECUTION_QUEUE);
      return "stop";
    }

    if (this.cancel.signal.aborted) {
      await this.record({ kind: "cancelled", abandoned: false }, i, at, label);
      return "stop";
    }

    // Per-step mutexes: this step's assets, taken all or nothing right before it runs.
    // The previous step's are released in the same transaction, so an asset two steps in
    // a row act on is never let go in between; a busy one releases everything and puts
    // the job back in the queue (no attempt used) to resume at this step.
    if (this.held !== "all" && this.held !== i) {
      const want = lockSet(e, i) ?? [];
      const conflict = await this.fenced(async (tx) => {
        const c = await takeLocks(tx, e.id, ctx.workerId, want, limits.leaseMs);
        if (c) throw new MutexBusy(c.asset, c.heldBy);
        return c;
      }).catch((err: unknown) => {
        if (err instanceof MutexBusy) return err;
        throw err;
      });
      if (conflict) {
        const pastDeadline = e.deadlineAt !== null && new Date(e.deadlineAt).getTime() <= Date.now();
        return this.record(
          classifyStepOutcome(
            { kind: "busy", asset: conflict.asset, heldBy: conflict.heldBy, pastDeadline },
            context(),
          ),
          i,
          at,
          label,
        );
      }
      this.held = e.lock === "execution" ? "all" : i;
    }
    const kind = STEP_KINDS[def.kind];
    const resumed = row.state === "running";
    if (resumed && !kind.resumable(def as never)) {
      return this.record(classifyStepOutcome({ kind: "not-resumable" }, context()), i, at, label);
    }

    const untilDeadline = e.deadlineAt
      ? new Date(e.deadlineAt).getTime() - Date.now()
      : Number.POSITIVE_INFINITY;
    let stop: StopReason | undefined;
    const stepController = new AbortController();
    const abort = (reason: StopReason) => {
      if (stepController.signal.aborted) return;
      stop = reason;
      stepController.abort(
        reason.kind === "lease"
          ? reason.error
          : new NovaError(
              reason.kind === "cancel" ? "NOVA_EXEC_CANCELLED" : "NOVA_EXEC_TIMEOUT",
              reason.kind === "cancel"
                ? "cancelled"
                : reason.kind === "deadline"
                  ? "execution time limit reached"
                  : `step time limit of ${reason.ms} ms reached`,
            ),
      );
    };
    const timers = [
      setTimeout(() => abort({ kind: "step-timeout", ms: stepMs }), stepMs),
      setTimeout(() => abort({ kind: "deadline" }), Math.max(0, Math.min(untilDeadline, 2 ** 31 - 1))),
    ];
    const onCancel = () => abort({ kind: "cancel" });
    const onLease = () => abort({ kind: "lease", error: ctx.signal.reason });
    this.cancel.signal.addEventListener("abort", onCancel, { once: true });
    ctx.signal.addEventListener("abort", onLease, { once: true });
    if (untilDeadline <= 0) abort({ kind: "deadline" });

    const started = Date.now();
    let lastProgressAt = 0;
    try {
      const { resolved, values } = await resolveSecrets(this.deps.store.read, this.deps.secretKey, def);
      for (const v of values) masker.add(v);
      await this.fenced(async (tx, emit) => {
        emit(
          await transitionStep(tx, e.id, i, at, "running", {
            attemptStarted: true,
            progressPct: 0,
            error: null,
            message: resumed ? "resumed after an interrupted attempt" : "",
          }),
        );
        await setCurrentStep(tx, e.id, i);
      });
      at = "running";
      logger.line(i, `${label} started${resumed ? " (resuming an interrupted attempt)" : ""}`);
      const work = kind.run(resolved as never, {
        signal: stepController.signal,
        services: this.deps.services,
        checkpoint: row.checkpoint,
        resumed,
        log: (message, level = "info") => logger.line(i, message, level),
        progress: (pct, message) => {
          const now = Date.now();
          if (now - lastProgressAt < 250) return;
          lastProgressAt = now;
          this.progress(i, pct, message === undefined ? undefined : masker.mask(message));
        },
        saveCheckpoint: async (data) => {
          await this.fenced((tx) => updateStep(tx, e.id, i, { checkpoint: masker.maskValue(data) }));
        },
      });
      const result = await settleWithGrace(work, stepController.signal, () =>
        stop?.kind === "cancel" ? limits.cancelGraceMs : 2000,
      );
      await this.fenced(async (tx, emit) => {
        // The next step takes its own mutexes (and lets these go) before it runs; the last
        // step's are released with the execution's end.
        emit(
          await transitionStep(tx, e.id, i, at, "completed", {
            progressPct: 100,
            message: "done",
            result: masker.maskValue(result),
          }),
        );
        await setCurrentStep(tx, e.id, i + 1);
      });
      this.completedSteps++;
      logger.line(i, `${label} completed in ${Date.now() - started} ms`);
      this.deps.observer?.stepFinished?.(def.kind, "completed", Date.now() - started);
      return "next";
    } catch (err) {
      this.deps.observer?.stepFinished?.(def.kind, stop?.kind ?? "failed", Date.now() - started);
      const outcome = classifyStepOutcome(
        {
          kind: "threw",
          error: err,
          stop,
          abandoned: err instanceof Abandoned,
          shutdown: ctx.signal.aborted,
        },
        context(),
      );
      // Lease lost: nothing may be written. Shutdown: the pool hands the job back.
      if (outcome.kind === "lost" || outcome.kind === "shutdown") throw err;
      return await this.record(outcome, i, at, label, err);
    } finally {
      for (const t of timers) clearTimeout(t);
      this.cancel.signal.removeEventListener("abort", onCancel);
      ctx.signal.removeEventListener("abort", onLease);
    }
  }

  /**
   * Records a step's outcome on the step and the execution (fenced), then ends the
   * attempt as the outcome says: quietly ("stop"), or by throwing what the pool needs to
   * retry, defer or dead-letter the job. `thrown` is the step's own error, rethrown for a
   * retry so the pool sees what failed.
   */
  private async record(
    outcome: StepOutcome,
    i: number,
    from: StepState,
    label: string,
    thrown?: unknown,
  ): Promise<"stop"> {
    const { e, logger, masker } = this;
    switch (outcome.kind) {
      case "completed":
      case "lost":
      case "shutdown":
        throw new Error(`runner: outcome ${outcome.kind} is not recorded`);
      case "cancelled": {
        const reason = `cancelled at ${label}${outcome.abandoned ? "; the step did not stop within the grace period and was abandoned (it may still be finishing)" : ""}`;
        logger.line(i, reason, "warn");
        await logger.flush(true);
        await this.fenced(async (tx, emit) => {
          emit(await transitionStep(tx, e.id, i, from, "cancelled", { message: masker.mask(reason) }));
          emit(await this.move(tx, "cancelled", reason, { currentStep: i, data: { stoppedAtStep: i } }));
          await releaseAssets(tx, e.id);
        });
        this.deps.wake?.wakeJobs(EXECUTION_QUEUE);
        return "stop";
      }
      case "requeue-busy": {
        const reason = `waiting for ${outcome.asset} before ${label}: held by execution ${outcome.heldBy}`;
        logger.line(i, reason);
        await logger.flush(true);
        await this.fenced(async (tx, emit) => {
          await releaseAssets(tx, e.id);
          emit(await this.move(tx, "queued", reason, { currentStep: i }));
        });
        throw new JobDeferred(new MutexBusy(outcome.asset, outcome.heldBy).message, 1000);
      }
      case "timed_out":
        await this.fail(i, from, outcome.error, "timed_out", "timed_out");
        throw new JobDead(outcome.error.message, outcome.jobError);
      case "retry":
        await this.fail(i, from, outcome.error, "pending", "queued");
        throw thrown ?? outcome.error;
      case "fail":
      case "partial": {
        await this.fail(i, from, outcome.error, "failed", outcome.kind === "partial" ? "partial" : "failed");
        const rec = outcome.jobError ?? errorRecord(outcome.error, masker);
        throw new JobDead(String(rec.message), rec);
      }
    }
  }

  /** Records a failed step: the step moves to `stepTo`, the execution to `to`; assets go. */
  private async fail(
    i: number,
    from: StepState,
    err: unknown,
    stepTo: "timed_out" | "failed" | "pending",
    to: "timed_out" | "failed" | "partial" | "queued",
  ): Promise<void> {
    const { e, logger, job } = this;
    const final = to !== "queued";
    const rec = errorRecord(err, this.masker);
    const message = String(rec.message);
    logger.line(i, `step ${i + 1} ${final ? "failed" : "failed, will retry"}: ${message}`, "error");
    await logger.flush(true);
    await this.fenced(async (tx, emit) => {
      emit(await transitionStep(tx, e.id, i, from, stepTo, { error: rec, message }));
      const reason = final
        ? `step ${i + 1} failed: ${message}`
        : `step ${i + 1} failed (attempt ${job.attempt}/${job.maxAttempts}), retrying with backoff: ${message}`;
      emit(await this.move(tx, to, reason, { currentStep: i, data: { error: rec } }));
      await releaseAssets(tx, e.id);
    });
    this.deps.wake?.wakeJobs(EXECUTION_QUEUE);
  }

  /** Moves the execution on from the state this attempt last moved it to. */
  private async move(
    tx: Queryable,
    to: ExecState,
    reason: string,
    extra: TransitionExtra,
  ): Promise<ClusterEvent> {
    const moved = await moveExecution(tx, this.e, to, reason, extra);
    this.e = { ...this.e, ...moved.execution };
    return moved.event;
  }

  /** Records a step's progress (fenced, best effort) and publishes it live. */
  private progress(idx: number, pct: number, message?: string): void {
    const executionId = this.e.id;
    const update: StepUpdate = { progressPct: Math.max(0, Math.min(100, pct)) };
    if (message !== undefined) update.message = message;
    void this.fenced((tx) => updateStep(tx, executionId, idx, update)).catch(() => {});
    this.deps.store.bus.publish([
      {
        id: 0,
        at: new Date().toISOString(),
        type: "execution.progress",
        resourceType: "execution",
        resourceId: executionId,
        data: { step: idx, percent: update.progressPct, ...(message ? { message } : {}) },
      },
    ]);
  }
}

/** Whose mutexes an attempt holds: a step's (by index), all of the plan's, or none. */
type Held = number | "all" | undefined;

/** The first step not yet done (the one a run starts or resumes at), or -1 when none is left. */
function firstPendingStep(e: ExecutionRecord): number {
  return e.steps.findIndex((s) => !STEP_DONE.includes(s.state));
}

/**
 * The mutexes step `i` needs: with lock: execution every asset of the plan; per step, the
 * step's own assets plus the plan's `assets` (so no execution ever waits while holding
 * anything: no deadlock). Undefined when nothing is to be locked (no step left, or an
 * approval step — waiting for a person holds nothing).
 */
function lockSet(e: ExecutionRecord, i: number): string[] | undefined {
  const step = e.steps[i];
  if (!step || e.plan.steps[i]?.kind === "approval") return undefined;
  if (e.lock === "execution") return e.assets;
  return lockOrder([...step.assets, ...(e.plan.assets ?? [])]);
}

/**
 * Lets go of whatever the execution holds and takes `assets`, all or nothing (inside the
 * caller's transaction: a conflict must roll the release back too).
 */
async function takeLocks(
  tx: Queryable,
  executionId: string,
  holder: string,
  assets: string[],
  leaseMs: number,
): Promise<MutexConflict | undefined> {
  await releaseAssets(tx, executionId);
  return acquireAssets(tx, executionId, holder, assets, leaseMs);
}

/** A step that ignored its signal past the grace period. */
export class Abandoned extends Error {}

/**
 * Awaits the step; once its signal fires, gives it `graceMs()` to settle (cooperative
 * stop), then stops waiting for it (forced).
 */
export function settleWithGrace<T>(work: Promise<T>, signal: AbortSignal, graceMs: () => number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const onAbort = () => {
      timer = setTimeout(() => reject(new Abandoned("step abandoned after the grace period")), graceMs());
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
    work.then(
      (v) => {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (err) => {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        reject(err);
      },
    );
  });
}

function errorRecord(err: unknown, masker: Masker): Record<string, unknown> {
  if (err instanceof NovaError) {
    return masker.maskValue({
      code: err.code,
      message: err.message,
      retryable: err.retryable,
      details: err.details,
    });
  }
  return { code: "NOVA_INTERNAL", message: masker.mask(describeError(err)), retryable: true };
}

/** The step kinds a plan uses (for logs and metrics). */
export function stepKinds(steps: PlanStep[]): string[] {
  return [...new Set(steps.map((s) => s.kind))];
}
