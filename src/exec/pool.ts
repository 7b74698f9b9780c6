/**
 * The worker pool: a number of slots (between minWorkers and maxWorkers, grown with the
 * queue's depth, shrunk when idle) fed by one claim loop. The loop claims as many jobs as
 * there are free slots in one query, runs them, and sleeps until a NOTIFY, a finished job
 * or the poll interval wakes it. Completions are batched into one UPDATE per event-loop
 * turn; leases are renewed in one UPDATE per heartbeat. A job whose lease could not be
 * renewed in time is aborted locally (self-fencing) because the reaper may already have
 * given it to another worker. Shutdown drains: running jobs get `drainMs` to finish, then
 * are aborted and handed back without using up an attempt.
 */
import { randomBytes } from "node:crypto";
import os from "node:os";
import type { Logger } from "pino";
import type { Db } from "../cluster/store/db.js";
import {
  type ClaimedJob,
  claimJobs,
  completeJobs,
  failJob,
  handBackJobs,
  type ReapedJob,
  readyDepth,
  reapExpiredLeases,
  renewLeases,
} from "../cluster/store/executions-queue.js";
import { describeError, NovaError } from "../lib/errors.js";
import { WakeableLoop } from "../lib/wakeable-loop.js";
import { type BackoffOptions, backoffMs, DEFAULT_EXEC_CONFIG, type PoolOptions } from "./config.js";
import type { WakeChannel } from "./notify.js";

/** What a handler gets besides the job. */
export interface JobContext {
  /** Aborted on lease loss (reason: NOVA_EXEC_LEASE_LOST error) or shutdown. */
  signal: AbortSignal;
  /** This pool's id: the lease owner written to `locked_by`. */
  workerId: string;
}

/** Runs one job; resolves when done (the job completes), throws to fail it. */
export type JobHandler = (job: ClaimedJob, ctx: JobContext) => Promise<void>;

/** Thrown by a handler to put the job back after `delayMs` without using up an attempt. */
export class JobDeferred extends Error {
  constructor(
    message: string,
    readonly delayMs: number,
  ) {
    super(message);
    this.name = "JobDeferred";
  }
}

/** Thrown by a handler to send the job straight to the dead-letter queue. */
export class JobDead extends Error {
  constructor(
    message: string,
    readonly error: Record<string, unknown>,
  ) {
    super(message);
    this.name = "JobDead";
  }
}

/** Counters and timings the pool reports (Prometheus in the server, plain in benchmarks). */
export interface PoolObserver {
  claimed?(job: ClaimedJob): void;
  finished?(job: ClaimedJob, outcome: "completed" | "retry" | "dead" | "deferred" | "lost", ms: number): void;
  reaped?(jobs: ReapedJob[]): void;
}

/** Pool construction options. */
export interface WorkerPoolOptions {
  db: Db;
  handlers: Record<string, JobHandler>;
  pool?: Partial<PoolOptions>;
  backoff?: BackoffOptions;
  wake?: WakeChannel;
  log?: Logger;
  observer?: PoolObserver;
  /** Called with jobs the reaper returned (e.g. to record it on their executions). */
  onReaped?: (jobs: ReapedJob[]) => Promise<void>;
  /** Extra work on each reaper tick (e.g. expiring approvals). */
  onReapTick?: () => Promise<void>;
  /** Tag for the worker id (e.g. the server's name). */
  name?: string;
}

interface Running {
  job: ClaimedJob;
  controller: AbortController;
  startedAt: number;
  lastRenewedAt: number;
  done: Promise<void>;
}

/** Health of a pool, for /healthz. */
export interface PoolHealth {
  workerId: string;
  status: "ok" | "degraded" | "stopped";
  size: number;
  minWorkers: number;
  maxWorkers: number;
  busy: number;
  queueDepth: number;
  listening: boolean;
  lastClaimAt: string | null;
  lastError: string | null;
}

const RENEW_TICK_MS = 200;

/** A pool of workers for some queues. */
export class WorkerPool {
  readonly workerId: string;
  private readonly opts: PoolOptions;
  private readonly backoff: BackoffOptions;
  private readonly queues: string[];
  private size: number;
  private readonly running = new Map<number, Running>();
  private pendingComplete: ClaimedJob[] = [];
  private flushing: Promise<void> | undefined;
  private flushScheduled = false;
  private dirty = true;
  private wakeLoop: (() => void) | undefined;
  private stopping = false;
  private started = false;
  private loopDone: Promise<void> | undefined;
  /** Lease renewal, the reaper and scaling: each on its own loop, one pass at a time. */
  private housekeeping: WakeableLoop[] = [];
  private unsubscribe: (() => void) | undefined;
  private lastSaturatedAt = Date.now();
  private lastClaimAt: number | null = null;
  private lastError: string | null = null;
  private lastErrorAt = 0;
  private depth = 0;
  private renewing = false;

  constructor(private readonly o: WorkerPoolOptions) {
    this.opts = { ...DEFAULT_EXEC_CONFIG.pool, ...o.pool };
    this.backoff = o.backoff ?? DEFAULT_EXEC_CONFIG.backoff;
    this.queues = Object.keys(o.handlers);
    this.size = Math.max(1, this.opts.minWorkers);
    this.workerId = `${o.name ?? os.hostname()}:${process.pid}:${randomBytes(4).toString("hex")}`;
  }

  /** Starts claiming. */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.unsubscribe = this.o.wake?.onJobs((queue) => {
      if (queue === "" || this.queues.includes(queue)) this.wake();
    });
    this.loopDone = this.loop();
    const every = (intervalMs: number, pass: () => Promise<void>) => {
      const loop = new WakeableLoop({
        pass,
        intervalMs,
        onError: (err) => this.noteError(err),
        runAtStart: false,
        ref: false,
      });
      loop.start();
      this.housekeeping.push(loop);
    };
    every(RENEW_TICK_MS, () => this.renew());
    every(this.opts.reapIntervalMs, () => this.reap());
    every(this.opts.scaleIntervalMs, () => this.scale());
  }

  /** Stops claiming, drains (finish or hand back), flushes completions. */
  async stop(): Promise<void> {
    if (!this.started || this.stopping) return this.loopDone;
    this.stopping = true;
    this.unsubscribe?.();
    this.wake();
    await this.loopDone;
    const all = () => Promise.allSettled([...this.running.values()].map((r) => r.done));
    if (this.running.size > 0) {
      await Promise.race([all(), sleepMs(this.opts.drainMs)]);
      for (const r of this.running.values())
        r.controller.abort(new NovaError("NOVA_INTERNAL", "worker pool shutting down"));
      await Promise.race([all(), sleepMs(2000)]);
    }
    // Whatever still runs ignored its signal: give it back so another worker retries it.
    const stuck = [...this.running.values()].map((r) => ({ id: r.job.id, attempt: r.job.attempt }));
    if (stuck.length > 0) await handBackJobs(this.o.db, this.workerId, stuck).catch(() => {});
    await this.flush();
    await Promise.all(this.housekeeping.map((l) => l.stop()));
    this.housekeeping = [];
  }

  /** Wakes the claim loop (work may be available or a slot freed). */
  wake(): void {
    this.dirty = true;
    this.wakeLoop?.();
  }

  /** Health for /healthz. */
  health(): PoolHealth {
    const recentError = this.lastError !== null && Date.now() - this.lastErrorAt < 10_000;
    return {
      workerId: this.workerId,
      status: this.stopping ? "stopped" : recentError || this.o.wake?.connected === false ? "degraded" : "ok",
      size: this.size,
      minWorkers: this.opts.minWorkers,
      maxWorkers: this.opts.maxWorkers,
      busy: this.running.size,
      queueDepth: this.depth,
      listening: this.o.wake?.connected ?? false,
      lastClaimAt: this.lastClaimAt ? new Date(this.lastClaimAt).toISOString() : null,
      lastError: recentError ? this.lastError : null,
    };
  }

  /** Ids of the jobs running here now (tests and diagnostics). */
  runningJobIds(): number[] {
    return [...this.running.keys()];
  }

  private noteError(err: unknown): void {
    this.lastError = describeError(err);
    this.lastErrorAt = Date.now();
    this.o.log?.warn({ err: this.lastError }, "execution worker pool: database call failed; retrying");
  }

  private async loop(): Promise<void> {
    let failures = 0;
    while (!this.stopping) {
      const free = this.size - this.running.size;
      if (free <= 0) {
        // Wait for a slot: a finishing job wakes us. Clearing `dirty` first keeps a wake-up
        // that came while every slot was busy from turning this into a busy loop.
        this.dirty = false;
        await this.sleepUntilWoken(this.opts.pollIntervalMs);
        this.dirty = true;
        continue;
      }
      this.dirty = false;
      let jobs: ClaimedJob[];
      try {
        jobs = await claimJobs(this.o.db, this.queues, this.workerId, free);
        failures = 0;
      } catch (err) {
        this.noteError(err);
        // The database is away (restart, network): back off, then carry on.
        failures++;
        await this.sleepUntilWoken(Math.min(5000, 100 * 2 ** Math.min(failures, 6)), true);
        continue;
      }
      if (jobs.length > 0) this.lastClaimAt = Date.now();
      if (this.stopping) {
        await handBackJobs(this.o.db, this.workerId, jobs).catch(() => {});
        break;
      }
      for (const job of jobs) this.run(job);
      if (jobs.length >= free) this.lastSaturatedAt = Date.now();
      if (jobs.length < free) await this.sleepUntilWoken(this.opts.pollIntervalMs);
    }
  }

  private sleepUntilWoken(ms: number, ignoreDirty = false): Promise<void> {
    if (this.dirty && !ignoreDirty) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.wakeLoop = () => {
        this.wakeLoop = undefined;
        if (!ignoreDirty || this.stopping) done();
      };
    });
  }

  private run(job: ClaimedJob): void {
    const controller = new AbortController();
    const now = Date.now();
    this.o.observer?.claimed?.(job);
    const entry: Running = { job, controller, startedAt: now, lastRenewedAt: now, done: Promise.resolve() };
    this.running.set(job.id, entry);
    const handler = this.o.handlers[job.queue]!;
    entry.done = (async () => {
      let outcome: "completed" | "retry" | "dead" | "deferred" | "lost" = "completed";
      try {
        await handler(job, { signal: controller.signal, workerId: this.workerId });
        if (controller.signal.aborted && isLeaseLost(controller.signal.reason)) outcome = "lost";
        else this.complete(job);
      } catch (err) {
        outcome = await this.settleFailure(job, controller.signal, err);
      } finally {
        this.running.delete(job.id);
        this.o.observer?.finished?.(job, outcome, Date.now() - now);
        this.wake();
      }
    })();
  }

  private async settleFailure(
    job: ClaimedJob,
    signal: AbortSignal,
    err: unknown,
  ): Promise<"retry" | "dead" | "deferred" | "lost"> {
    if (isLeaseLost(err) || (signal.aborted && isLeaseLost(signal.reason))) return "lost";
    try {
      if (this.stopping && signal.aborted) {
        await handBackJobs(this.o.db, this.workerId, [job]);
        return "deferred";
      }
      if (err instanceof JobDeferred) {
        await failJob(this.o.db, this.workerId, job, { message: err.message }, err.delayMs, true);
        return "deferred";
      }
      const error = errorRecord(err);
      if (err instanceof JobDead || !willRetry(job, err)) {
        await failJob(this.o.db, this.workerId, job, err instanceof JobDead ? err.error : error, null);
        return "dead";
      }
      await failJob(this.o.db, this.workerId, job, error, backoffMs(this.backoff, job.attempt));
      return "retry";
    } catch (dbErr) {
      // Could not record it: the lease runs out and the reaper retries the job.
      this.noteError(dbErr);
      return "lost";
    }
  }

  private complete(job: ClaimedJob): void {
    this.pendingComplete.push(job);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // Completions of jobs that finish in the same event-loop turn share one UPDATE.
    setImmediate(() => {
      this.flushScheduled = false;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    while (this.flushing) await this.flushing;
    if (this.pendingComplete.length === 0) return;
    const batch = this.pendingComplete;
    this.pendingComplete = [];
    this.flushing = (async () => {
      try {
        await completeJobs(this.o.db, this.workerId, batch);
      } catch (err) {
        this.noteError(err);
        // Keep them: they stay leased (renewed below) until a flush succeeds.
        this.pendingComplete.unshift(...batch);
        if (!this.stopping) setTimeout(() => void this.flush(), 500).unref();
      }
    })();
    await this.flushing;
    this.flushing = undefined;
  }

  private async renew(): Promise<void> {
    if (this.renewing) return;
    const now = Date.now();
    const due = [...this.running.values()].filter((r) => now - r.lastRenewedAt >= r.job.leaseMs / 3);
    const pending = this.pendingComplete.map((j) => ({ id: j.id, attempt: j.attempt }));
    // Self-fencing: past its lease, a job may already run elsewhere; stop it here.
    for (const r of due) {
      if (now - r.lastRenewedAt >= r.job.leaseMs) {
        r.controller.abort(
          leaseLost(r.job, "its lease could not be renewed in time (database unreachable?)"),
        );
      }
    }
    if (due.length === 0 && pending.length === 0) return;
    this.renewing = true;
    try {
      const held = await renewLeases(this.o.db, this.workerId, [
        ...due.map((r) => ({ id: r.job.id, attempt: r.job.attempt })),
        ...pending,
      ]);
      for (const r of due) {
        if (held.has(r.job.id)) r.lastRenewedAt = now;
        else r.controller.abort(leaseLost(r.job, "its lease was taken over"));
      }
    } finally {
      this.renewing = false;
    }
  }

  private async reap(): Promise<void> {
    if (this.stopping) return;
    const reaped = await reapExpiredLeases(this.o.db);
    if (reaped.length > 0) {
      this.o.log?.warn(
        { jobs: reaped.map((j) => j.id), holders: [...new Set(reaped.map((j) => j.lockedBy))] },
        "returned jobs with expired leases to the queue",
      );
      this.o.observer?.reaped?.(reaped);
      await this.o.onReaped?.(reaped);
      this.wake();
    }
    await this.o.onReapTick?.();
  }

  private async scale(): Promise<void> {
    if (this.stopping) return;
    this.depth = await readyDepth(this.o.db, this.queues, this.opts.maxWorkers * 10);
    const busy = this.running.size;
    if (busy >= this.size) this.lastSaturatedAt = Date.now();
    if (this.depth > 0 && busy >= this.size && this.size < this.opts.maxWorkers) {
      const before = this.size;
      this.size = Math.min(this.opts.maxWorkers, this.size + this.depth);
      this.o.log?.debug({ from: before, to: this.size, depth: this.depth }, "execution pool grew");
      this.wake();
    } else if (
      Date.now() - this.lastSaturatedAt > this.opts.idleShrinkMs &&
      this.size > Math.max(1, this.opts.minWorkers, busy)
    ) {
      this.size--;
      this.lastSaturatedAt = Date.now();
    }
  }
}

/** True when a failed attempt will be retried (retryable error and attempts left). */
export function willRetry(job: { attempt: number; maxAttempts: number }, err: unknown): boolean {
  return isRetryable(err) && job.attempt < job.maxAttempts;
}

/** Whether an error says a retry may help (NovaError's flag; unknown errors: yes). */
export function isRetryable(err: unknown): boolean {
  if (err instanceof JobDead) return false;
  if (err instanceof NovaError) return err.retryable;
  return true;
}

function leaseLost(job: ClaimedJob, why: string): NovaError {
  return new NovaError("NOVA_EXEC_LEASE_LOST", `Job ${job.id} attempt ${job.attempt}: ${why}`, {
    details: { job: job.id, attempt: job.attempt },
  });
}

function isLeaseLost(err: unknown): boolean {
  return err instanceof NovaError && err.code === "NOVA_EXEC_LEASE_LOST";
}

function errorRecord(err: unknown): Record<string, unknown> {
  if (err instanceof NovaError) return { code: err.code, message: err.message, details: err.details };
  return { code: "NOVA_INTERNAL", message: describeError(err) };
}

function sleepMs(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}
