/**
 * Runs one execution as a job of the `execution` queue: re-checks authorisation, takes
 * the plan's asset mutexes, then runs the steps in order from the first one not
 * completed, recording each step's state, progress, checkpoint and result. Every write is
 * fenced by the job's lease (a worker whose lease was reaped changes nothing). Cancel,
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
  countCompletedSteps,
  type ExecutionRecord,
  getExecution,
  isCancelRequested,
  moveExecution,
  noteQueuedReason,
  type StepUpdate,
  setCurrentStep,
  transitionExecution,
  transitionStep,
  updateStep,
} from "../cluster/store/executions.js";
import { type ClaimedJob, holdJobLease } from "../cluster/store/executions-queue.js";
import type { Store } from "../cluster/store/store.js";
import { describeError, NovaError } from "../lib/errors.js";
import { STEP_DONE, type StepState } from "../states/step.js";
import { type ExecConfig, stepTimeoutMs } from "./config.js";
import { ExecLogger } from "./exec-log.js";
import { Masker } from "./masker.js";
import type { WakeChannel } from "./notify.js";
import { type JobContext, JobDead, JobDeferred, willRetry } from "./pool.js";
import { assertMayRun, currentPrincipal } from "./rbac.js";
import { resolveSecrets, type SecretKey } from "./secrets.js";
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

/** Why a step's signal fired. */
type StopReason =
  | { kind: "cancel" }
  | { kind: "step-timeout"; ms: number }
  | { kind: "deadline" }
  | { kind: "lease"; error: unknown };

class MutexBusy extends Error {
  constructor(
    readonly asset: string,
    readonly heldBy: string,
  ) {
    super(`asset ${asset} is held by execution ${heldBy}`);
  }
}

/** Runs executions. */
export class ExecutionRunner {
  constructor(private readonly deps: RunnerDeps) {}

  /** The job handler for the execution queue. */
  readonly handle = async (job: ClaimedJob, ctx: JobContext): Promise<void> => {
    const executionId = String(job.payload.executionId);
    const fenced = <T>(fn: (tx: Queryable, emit: (e: ClusterEvent) => void) => Promise<T>) =>
      this.deps.store.write(async (tx, emit) => {
        if (!(await holdJobLease(tx, ctx.workerId, job))) {
          throw new NovaError(
            "NOVA_EXEC_LEASE_LOST",
            `Job ${job.id} attempt ${job.attempt} is no longer ours`,
          );
        }
        return fn(tx, emit);
      });

    // 1. Start: still runnable? still allowed? the first step's asset mutexes free?
    let exec: ExecutionRecord | undefined;
    // Whose mutexes this attempt holds: a step's index, or "all" (lock: execution).
    let held: Held;
    try {
      exec = await fenced(async (tx, emit) => {
        const e = await getExecution(tx, executionId, true);
        if (e.state !== "queued" && e.state !== "running") return undefined;
        if (e.cancelRequested) {
          emit(await transitionExecution(tx, e, "cancelled", "cancelled before it started"));
          await releaseAssets(tx, e.id);
          return undefined;
        }
        assertMayRun(await currentPrincipal(tx, { kind: e.actorKind, id: e.actorId }), e.plan, e.id);
        const limits = this.deps.config.sla[e.sla];
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
        const started = await moveExecution(
          tx,
          from,
          "running",
          `attempt ${job.attempt}/${job.maxAttempts} on worker ${ctx.workerId}`,
          { startedNow: true, deadlineAt: deadline, approvalExpiresAt: null },
        );
        emit(started.event);
        return started.execution;
      });
    } catch (err) {
      if (err instanceof MutexBusy) {
        await this.noteWaiting(executionId, err);
        throw new JobDeferred(err.message, 1000);
      }
      if (err instanceof NovaError && err.code === "NOVA_FORBIDDEN") {
        await this.finishFailed(fenced, executionId, err, "failed").catch(() => {});
        throw new JobDead(err.message, { code: err.code, message: err.message });
      }
      throw err;
    }
    if (!exec) return;
    const e = exec;
    const masker = new Masker();
    const logger = new ExecLogger(this.deps.store, e.id, masker);
    const limits = this.deps.config.sla[e.sla];

    // Renew the asset leases with the job's, and watch for cancel (NOTIFY + poll).
    const cancel = new AbortController();
    const offCancel = this.deps.wake?.onCancel((id) => {
      if (id === e.id) cancel.abort();
    });
    const keepAlive = setInterval(
      () => {
        void (async () => {
          try {
            await renewAssets(this.deps.store.db, e.id, limits.leaseMs);
            if (await isCancelRequested(this.deps.store.db, e.id)) cancel.abort();
          } catch {
            // The pool's lease renewal decides whether we still own the job.
          }
        })();
      },
      Math.max(100, Math.min(1000, limits.leaseMs / 3)),
    );
    keepAlive.unref();

    try {
      await this.runSteps(e, job, ctx, fenced, masker, logger, cancel.signal, held);
    } finally {
      clearInterval(keepAlive);
      offCancel?.();
      await logger.flush(true);
    }
  };

  private async runSteps(
    e: ExecutionRecord,
    job: ClaimedJob,
    ctx: JobContext,
    fenced: <T>(fn: (tx: Queryable, emit: (e: ClusterEvent) => void) => Promise<T>) => Promise<T>,
    masker: Masker,
    logger: ExecLogger,
    cancelSignal: AbortSignal,
    heldAtStart: Held,
  ): Promise<void> {
    const limits = this.deps.config.sla[e.sla];
    let held = heldAtStart;
    const steps = e.plan.steps;
    const total = steps.length;
    logger.line(null, `attempt ${job.attempt}/${job.maxAttempts} started on ${ctx.workerId}`);
    for (let i = 0; i < total; i++) {
      const def = steps[i]!;
      const row = e.steps[i]!;
      if (STEP_DONE.includes(row.state)) continue;
      // The step's state as this attempt last wrote it (the from-state of its next move).
      let at: StepState = row.state;
      const label = `step ${i + 1}/${total} (${row.name})`;

      if (def.kind === "approval") {
        const expires = new Date(
          Date.now() + (e.plan.timeouts?.approvalSeconds ?? limits.approvalTimeoutMs / 1000) * 1000,
        );
        logger.line(i, `${label}: waiting for approval until ${expires.toISOString()}`);
        await logger.flush(true);
        await fenced(async (tx, emit) => {
          emit(
            await transitionStep(tx, e.id, i, at, "waiting_approval", {
              message: masker.mask(def.message ?? "waiting for approval"),
            }),
          );
          emit(
            await transitionExecution(tx, e, "pending_approval", `${label} waits for approval`, {
              currentStep: i,
              approvalExpiresAt: expires,
            }),
          );
          // Waiting for a person may take days: do not keep the assets locked meanwhile.
          await releaseAssets(tx, e.id);
        });
        this.deps.wake?.wakeJobs(EXECUTION_QUEUE);
        return;
      }

      if (cancelSignal.aborted) {
        await this.finishCancelled(fenced, e, i, at, label, false, masker, logger);
        return;
      }

      // Per-step mutexes: this step's assets, taken all or nothing right before it runs.
      // The previous step's are released in the same transaction, so an asset two steps in
      // a row act on is never let go in between; a busy one releases everything and puts
      // the job back in the queue (no attempt used) to resume at this step.
      if (held !== "all" && held !== i) {
        const want = lockSet(e, i) ?? [];
        const conflict = await fenced(async (tx) => {
          const c = await takeLocks(tx, e.id, ctx.workerId, want, limits.leaseMs);
          if (c) throw new MutexBusy(c.asset, c.heldBy);
          return c;
        }).catch((err: unknown) => {
          if (err instanceof MutexBusy) return err;
          throw err;
        });
        if (conflict) {
          const pastDeadline = e.deadlineAt !== null && new Date(e.deadlineAt).getTime() <= Date.now();
          if (pastDeadline) {
            const te = new NovaError(
              "NOVA_EXEC_TIMEOUT",
              `${label} stopped: the execution's time limit passed while it waited for ${conflict.asset} (held by execution ${conflict.heldBy})`,
              { details: { step: i, limit: "execution", asset: conflict.asset } },
            );
            await this.finishStepFailure(fenced, e, i, at, te, masker, logger, job, true, "timed_out");
            throw new JobDead(te.message, { code: te.code, message: te.message, details: te.details });
          }
          const reason = `waiting for ${conflict.asset} before ${label}: held by execution ${conflict.heldBy}`;
          logger.line(i, reason);
          await logger.flush(true);
          await fenced(async (tx, emit) => {
            await releaseAssets(tx, e.id);
            emit(await transitionExecution(tx, e, "queued", reason, { currentStep: i }));
          });
          throw new JobDeferred(conflict.message, 1000);
        }
        held = e.lock === "execution" ? "all" : i;
      }
      const kind = STEP_KINDS[def.kind];
      const resumed = row.state === "running";
      if (resumed && !kind.resumable(def as never)) {
        const err = new NovaError(
          "NOVA_EXEC_NOT_IDEMPOTENT",
          `${label} was interrupted by a worker failure and is not idempotent, so it is not run again. Check what it did, then: novacron exec retry ${e.id}`,
          { details: { step: i } },
        );
        await this.finishStepFailure(fenced, e, i, at, err, masker, logger, job, true);
        throw new JobDead(err.message, { code: err.code, message: err.message, details: err.details });
      }

      const stepMs = stepTimeoutMs(this.deps.config, e.sla, def.kind, def.timeoutSeconds);
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
      cancelSignal.addEventListener("abort", onCancel, { once: true });
      ctx.signal.addEventListener("abort", onLease, { once: true });
      if (untilDeadline <= 0) abort({ kind: "deadline" });

      const started = Date.now();
      let lastProgressAt = 0;
      try {
        const { resolved, values } = await resolveSecrets(this.deps.store.read, this.deps.secretKey, def);
        for (const v of values) masker.add(v);
        await fenced(async (tx, emit) => {
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
            this.progress(e.id, i, pct, message === undefined ? undefined : masker.mask(message));
          },
          saveCheckpoint: async (data) => {
            await fenced((tx) => updateStep(tx, e.id, i, { checkpoint: masker.maskValue(data) }));
          },
        });
        const result = await settleWithGrace(work, stepController.signal, () =>
          stop?.kind === "cancel" ? limits.cancelGraceMs : 2000,
        );
        await fenced(async (tx, emit) => {
          // The next step takes its own mutexes (and lets these go) before it runs; the last
          // step's are released with the execution's end below.
          emit(
            await transitionStep(tx, e.id, i, at, "completed", {
              progressPct: 100,
              message: "done",
              result: masker.maskValue(result),
            }),
          );
          await setCurrentStep(tx, e.id, i + 1);
        });
        logger.line(i, `${label} completed in ${Date.now() - started} ms`);
        this.deps.observer?.stepFinished?.(def.kind, "completed", Date.now() - started);
      } catch (err) {
        this.deps.observer?.stepFinished?.(def.kind, stop?.kind ?? "failed", Date.now() - started);
        if (stop?.kind === "lease" || (err instanceof NovaError && err.code === "NOVA_EXEC_LEASE_LOST"))
          throw err;
        if (ctx.signal.aborted) throw err; // shutdown: the pool hands the job back
        if (stop?.kind === "cancel") {
          await this.finishCancelled(fenced, e, i, at, label, err instanceof Abandoned, masker, logger);
          return;
        }
        if (stop?.kind === "step-timeout" || stop?.kind === "deadline") {
          const te = new NovaError(
            "NOVA_EXEC_TIMEOUT",
            stop.kind === "deadline"
              ? `${label} stopped: the execution's time limit passed`
              : `${label} ran past its time limit of ${Math.round(stepMs / 1000)} s`,
            { details: { step: i, limit: stop.kind === "deadline" ? "execution" : "step" } },
          );
          await this.finishStepFailure(fenced, e, i, at, te, masker, logger, job, true, "timed_out");
          throw new JobDead(te.message, { code: te.code, message: te.message, details: te.details });
        }
        const final = !willRetry(job, err);
        await this.finishStepFailure(fenced, e, i, at, err, masker, logger, job, final);
        if (final) {
          const rec = errorRecord(err, masker);
          throw new JobDead(String(rec.message), rec);
        }
        throw err;
      } finally {
        for (const t of timers) clearTimeout(t);
        cancelSignal.removeEventListener("abort", onCancel);
        ctx.signal.removeEventListener("abort", onLease);
      }
    }
    logger.line(null, `completed: all ${total} steps done`);
    await logger.flush(true);
    await fenced(async (tx, emit) => {
      emit(
        await transitionExecution(tx, e, "completed", `all ${total} steps completed`, { currentStep: total }),
      );
      await releaseAssets(tx, e.id);
    });
    this.deps.wake?.wakeJobs(EXECUTION_QUEUE);
  }

  private progress(executionId: string, idx: number, pct: number, message?: string): void {
    const update: StepUpdate = { progressPct: Math.max(0, Math.min(100, pct)) };
    if (message !== undefined) update.message = message;
    void updateStep(this.deps.store.db, executionId, idx, update).catch(() => {});
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

  private async finishCancelled(
    fenced: <T>(fn: (tx: Queryable, emit: (e: ClusterEvent) => void) => Promise<T>) => Promise<T>,
    e: ExecutionRecord,
    i: number,
    from: StepState,
    label: string,
    abandoned: boolean,
    masker: Masker,
    logger: ExecLogger,
  ): Promise<void> {
    const reason = `cancelled at ${label}${abandoned ? "; the step did not stop within the grace period and was abandoned (it may still be finishing)" : ""}`;
    logger.line(i, reason, "warn");
    await logger.flush(true);
    await fenced(async (tx, emit) => {
      emit(await transitionStep(tx, e.id, i, from, "cancelled", { message: masker.mask(reason) }));
      emit(
        await transitionExecution(tx, e, "cancelled", reason, { currentStep: i, data: { stoppedAtStep: i } }),
      );
      await releaseAssets(tx, e.id);
    });
    this.deps.wake?.wakeJobs(EXECUTION_QUEUE);
  }

  private async finishStepFailure(
    fenced: <T>(fn: (tx: Queryable, emit: (e: ClusterEvent) => void) => Promise<T>) => Promise<T>,
    e: ExecutionRecord,
    i: number,
    from: StepState,
    err: unknown,
    masker: Masker,
    logger: ExecLogger,
    job: ClaimedJob,
    final: boolean,
    finalState?: "timed_out",
  ): Promise<void> {
    const rec = errorRecord(err, masker);
    const message = String(rec.message);
    logger.line(i, `step ${i + 1} ${final ? "failed" : "failed, will retry"}: ${message}`, "error");
    await logger.flush(true);
    await fenced(async (tx, emit) => {
      const anyDone = await countCompletedSteps(tx, e.id);
      const stepState = finalState ?? (final ? "failed" : "pending");
      emit(await transitionStep(tx, e.id, i, from, stepState, { error: rec, message }));
      const to = finalState ?? (final ? (anyDone > 0 ? "partial" : "failed") : "queued");
      const reason = final
        ? `step ${i + 1} failed: ${message}`
        : `step ${i + 1} failed (attempt ${job.attempt}/${job.maxAttempts}), retrying with backoff: ${message}`;
      emit(await transitionExecution(tx, e, to, reason, { currentStep: i, data: { error: rec } }));
      await releaseAssets(tx, e.id);
    });
    this.deps.wake?.wakeJobs(EXECUTION_QUEUE);
  }

  private async finishFailed(
    fenced: <T>(fn: (tx: Queryable, emit: (e: ClusterEvent) => void) => Promise<T>) => Promise<T>,
    executionId: string,
    err: NovaError,
    to: "failed",
  ): Promise<void> {
    await fenced(async (tx, emit) => {
      let e: ExecutionRecord = await getExecution(tx, executionId, true);
      if (e.state === "queued") {
        const started = await moveExecution(tx, e, "running", "checking permissions");
        emit(started.event);
        e = started.execution;
      }
      emit(
        await transitionExecution(tx, e, to, err.message, {
          data: { error: { code: err.code, message: err.message } },
        }),
      );
      await releaseAssets(tx, e.id);
    });
  }

  private async noteWaiting(executionId: string, busy: MutexBusy): Promise<void> {
    const reason = `waiting for ${busy.asset}: held by execution ${busy.heldBy}`;
    await this.deps.store.write((tx) => noteQueuedReason(tx, executionId, reason)).catch(() => {});
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
