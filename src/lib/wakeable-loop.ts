/**
 * A loop that runs one pass at a time, again after `intervalMs` of quiet, and at once when
 * woken. Wakes that arrive during a pass are coalesced into one more pass right after it,
 * so a burst of events costs at most one extra pass and no event is missed. The reconciler,
 * the migration scheduler, the agent's heartbeat and the execution pruner all run on it.
 */

/** What a loop does and how often. */
export interface WakeableLoopOptions {
  /** One pass. Its errors go to `onError`; the loop keeps going. */
  pass: () => Promise<void>;
  /** Quiet time between passes when nothing wakes the loop. */
  intervalMs: number;
  /** Told about a pass that threw. */
  onError: (err: unknown) => void;
  /**
   * Whether the first pass runs at `start()` (true) or one interval later (false).
   * @defaultValue true
   */
  runAtStart?: boolean;
  /**
   * Whether a pending timer keeps the process alive.
   * @defaultValue true
   */
  ref?: boolean;
}

/** start / stop / wake around a pass function; see the module header. */
export class WakeableLoop {
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> | undefined;
  private again = false;
  private stopped = true;

  constructor(private readonly o: WakeableLoopOptions) {}

  /** Starts the loop (idempotent). */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    if (this.o.runAtStart ?? true) this.wake();
    else this.arm();
  }

  /** Stops the loop and waits for the pass in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.inFlight;
  }

  /** Runs a pass soon: now when idle, right after the current one otherwise. */
  wake(): void {
    if (this.stopped) return;
    if (this.inFlight) {
      this.again = true;
      return;
    }
    clearTimeout(this.timer);
    this.timer = undefined;
    this.inFlight = this.runPass().finally(() => {
      this.inFlight = undefined;
      if (this.stopped) return;
      if (this.again) {
        this.again = false;
        this.wake();
      } else {
        this.arm();
      }
    });
  }

  /** The pass in flight, if any (to wait for it). */
  get current(): Promise<void> | undefined {
    return this.inFlight;
  }

  /** True between start() and stop(). */
  get running(): boolean {
    return !this.stopped;
  }

  private async runPass(): Promise<void> {
    try {
      await this.o.pass();
    } catch (err) {
      this.o.onError(err);
    }
  }

  private arm(): void {
    this.timer = setTimeout(() => this.wake(), this.o.intervalMs);
    if (this.o.ref === false) this.timer.unref();
  }
}
