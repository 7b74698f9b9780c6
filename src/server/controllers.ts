/**
 * The controllers only the control-plane leader runs (cluster/leadership.ts decides who
 * leads): the one place they are started when this server becomes leader and stopped when
 * it stops being one. Add a controller here, in the order it should start; stopping runs
 * in reverse. Everything else a server runs (the API, execution workers on their leased
 * queue, certificate renewal, the federation's listener) runs on every replica.
 */
import type { Logger } from "pino";
import { describeError } from "../lib/errors.js";

/** A loop that must not run on two replicas at once. */
export interface LeaderController {
  /** For logs. */
  name: string;
  start(): void | Promise<void>;
  /** Stops, waiting for work in flight to reach a point the next leader resumes from. */
  stop(): Promise<void>;
  /** Runs a pass soon (a follower's change reached this leader). */
  wake?(): void;
}

/** The leader's controllers, started and stopped together. */
export class LeaderControllers {
  private running = false;

  constructor(
    private readonly controllers: readonly LeaderController[],
    private readonly log: Logger,
  ) {}

  /** Whether they run now. */
  get isRunning(): boolean {
    return this.running;
  }

  /** Starts them all, in order (idempotent). */
  async start(epoch: number): Promise<void> {
    if (this.running) return;
    this.running = true;
    for (const c of this.controllers) await c.start();
    this.log.info({ epoch, controllers: this.controllers.map((c) => c.name) }, "leader controllers started");
  }

  /** Stops them all, in reverse order; one failing does not keep the others running. */
  async stop(reason: string): Promise<void> {
    if (!this.running) return;
    this.running = false;
    for (const c of [...this.controllers].reverse()) {
      try {
        await c.stop();
      } catch (err) {
        this.log.error({ controller: c.name, err: describeError(err) }, "controller failed to stop");
      }
    }
    this.log.info({ reason }, "leader controllers stopped");
  }

  /** Wakes every controller that can be woken (no-op while they are stopped). */
  wake(): void {
    if (!this.running) return;
    for (const c of this.controllers) c.wake?.();
  }
}
