/**
 * The bounded, in-order pipeline both ends of a page stream share (docs/dwcp.md §7.8): the
 * sender's batch sends and the receiver's batch applies each run one after another in the
 * order they were added, while their encoding or decoding may run ahead on the worker
 * pool; add() returns once fewer than `max` steps are pending (or the stream failed), so
 * at most `max` batches are ever held.
 */
import { HdeWorkerPool } from "./worker-pool.js";

export class OrderedSteps {
  private chain: Promise<void> = Promise.resolve();
  private pending = 0;
  /** Callers waiting for a free slot (several, if flush() is called concurrently). */
  private waiters: (() => void)[] = [];

  constructor(
    private readonly max: number,
    /** The stream failed: nobody waits for a slot any more. */
    private readonly stopped: () => boolean,
  ) {}

  /** Queues `step` after the ones before it; `onError` gets what it throws. */
  async add(step: () => Promise<void>, onError: (err: unknown) => void): Promise<void> {
    this.pending++;
    this.chain = this.chain
      .then(step)
      .catch(onError)
      .finally(() => {
        this.pending--;
        for (const w of this.waiters.splice(0)) w();
      });
    while (this.pending >= this.max && !this.stopped()) {
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  /** Resolves once every step added so far has run. */
  idle(): Promise<void> {
    return this.chain;
  }
}

/**
 * The pool a page stream uses (`undefined`: the process's; null or an empty pool: inline)
 * and how many batches it may hold: 2 per thread, 1 inline.
 */
export function pipelineFor(
  option: HdeWorkerPool | null | undefined,
  maxBatchesInFlight: number | undefined,
): { pool: HdeWorkerPool | null; maxInFlight: number } {
  const p = option === undefined ? HdeWorkerPool.shared() : option;
  const pool = p && p.threads > 0 ? p : null;
  return { pool, maxInFlight: Math.max(1, maxBatchesInFlight ?? (pool ? Math.max(2, 2 * pool.threads) : 1)) };
}
