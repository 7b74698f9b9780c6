/**
 * Wakes the listener's waiting pulls when this cluster's record set grows (a publish, or
 * records accepted from a peer), so that a change reaches every peer within one round
 * trip instead of one heartbeat.
 */
export class Changes {
  private waiters = new Set<() => void>();
  private generation = 0;

  /** Something changed. */
  signal(): void {
    this.generation++;
    const w = this.waiters;
    this.waiters = new Set();
    for (const f of w) f();
  }

  /** The count of signals so far (a waiter compares it to tell whether it missed one). */
  get current(): number {
    return this.generation;
  }

  /** Resolves at the next signal after `seen`, or after `ms`; false on timeout. */
  wait(seen: number, ms: number): Promise<boolean> {
    if (this.generation !== seen) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.waiters.delete(done);
        resolve(false);
      }, ms);
      this.waiters.add(done);
    });
  }
}
