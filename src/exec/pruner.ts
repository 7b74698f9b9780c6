/**
 * The pruner: deletes what finished long enough ago — completed, cancelled and rejected
 * executions (their steps and logs go with them), completed queue jobs — and idempotency
 * keys whose window has passed. It never touches anything live: queued, running or
 * waiting executions and jobs, and the dead-letter queue (failed, partial and timed-out
 * executions, dead jobs), which waits for an operator however old it is.
 *
 * Deletes run in batches of `batchSize` rows per statement, at most `maxBatchesPerRun`
 * per table per run, so a first run over a long history neither holds locks for long nor
 * writes one huge WAL burst; what is left waits for the next run. Every server with
 * workers runs it; SKIP LOCKED keeps concurrent pruners (and live workers) apart.
 *
 * Completed jobs are found by walking the primary key in id order (ids grow with time),
 * `batchSize` completed jobs at a time, deleting those that finished before the cutoff;
 * the walk ends at the first batch with none old enough. A time index on exec_jobs would
 * make every job completion pay an extra index insert on the queue's hot path; the id
 * walk needs none. Its one approximation: old jobs behind a whole batch of young ones
 * with lower ids (jobs that ran long) wait until those age too.
 */
import type { Logger } from "pino";
import type { Queryable } from "../cluster/store/db.js";
import {
  pruneCompletedJobs,
  pruneExecutions,
  pruneIdempotencyKeys,
  pruneStaleLocks,
} from "../cluster/store/exec-prune.js";
import { describeError } from "../lib/errors.js";
import { WakeableLoop } from "../lib/wakeable-loop.js";
import type { RetentionOptions } from "./config.js";

/** What one run deleted. */
export interface PruneResult {
  executions: number;
  jobs: number;
  idempotencyKeys: number;
  assetLocks: number;
  /** Statements issued, per table summed: bounded by 4 × maxBatchesPerRun. */
  batches: number;
}

/** One pass over every table, in bounded batches. */
export async function pruneOnce(db: Queryable, r: RetentionOptions): Promise<PruneResult> {
  const result: PruneResult = { executions: 0, jobs: 0, idempotencyKeys: 0, assetLocks: 0, batches: 0 };
  const drain = async (key: Exclude<keyof PruneResult, "batches">, batch: () => Promise<number>) => {
    for (let i = 0; i < r.maxBatchesPerRun; i++) {
      const n = await batch();
      result.batches++;
      result[key] += n;
      if (n < r.batchSize) return;
    }
  };
  await drain("executions", () => pruneExecutions(db, r.finishedMs, r.batchSize));
  let after = 0;
  for (let i = 0; i < r.maxBatchesPerRun; i++) {
    const b = await pruneCompletedJobs(db, r.finishedMs, r.batchSize, after);
    result.batches++;
    result.jobs += b.deleted;
    if (b.deleted === 0 || b.scanned < r.batchSize) break;
    after = b.lastId;
  }
  await drain("idempotencyKeys", () => pruneIdempotencyKeys(db, r.batchSize));
  await drain("assetLocks", () => pruneStaleLocks(db, r.batchSize));
  return result;
}

/** Runs `pruneOnce` every `pruneIntervalMs` (first run one interval after start). */
export class Pruner {
  private readonly loop: WakeableLoop;
  private running: Promise<void> | undefined;
  private last: { at: string; result?: PruneResult; error?: string } | undefined;

  constructor(
    private readonly db: Queryable,
    private readonly retention: RetentionOptions,
    private readonly log?: Logger,
  ) {
    this.loop = new WakeableLoop({
      pass: () => this.run(),
      intervalMs: retention.pruneIntervalMs,
      // run() records and logs its own failures.
      onError: () => {},
      runAtStart: false,
      ref: false,
    });
  }

  /** Starts the periodic runs. */
  start(): void {
    this.loop.start();
  }

  /** Runs once now (unless a run is in progress, which it waits for instead). */
  run(): Promise<void> {
    this.running ??= (async () => {
      try {
        const result = await pruneOnce(this.db, this.retention);
        this.last = { at: new Date().toISOString(), result };
        if (result.executions + result.jobs + result.idempotencyKeys + result.assetLocks > 0)
          this.log?.info(result, "pruned finished executions, jobs and expired idempotency keys");
      } catch (err) {
        // The database may be away (restart): the next run tries again.
        this.last = { at: new Date().toISOString(), error: describeError(err) };
        this.log?.warn({ err: describeError(err) }, "pruning failed; retrying at the next run");
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  /** The last run's outcome (health, tests). */
  lastRun(): { at: string; result?: PruneResult; error?: string } | undefined {
    return this.last;
  }

  /** Stops the periodic runs and waits for one in progress. */
  async stop(): Promise<void> {
    await this.loop.stop();
    await this.running;
  }
}
