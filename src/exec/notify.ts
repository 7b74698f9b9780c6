/**
 * Wake-ups for idle workers. Enqueues NOTIFY `nova_jobs` in the same statement; on
 * PostgreSQL a dedicated LISTEN connection (reconnected with backoff after a database
 * restart) turns that into a local wake-up, so a job submitted to any replica starts at
 * once. In-process signals cover PGlite (one process owns it) and skip the round trip for
 * local enqueues. Polling stays as the fallback when notifications are lost.
 */
import { EventEmitter } from "node:events";
import type { Logger } from "pino";
import { JOBS_CHANNEL } from "../cluster/store/executions-queue.js";

/** The channel cancel requests travel on; the payload is the execution id. */
export const CANCEL_CHANNEL = "nova_exec_cancel";

/** Local fan-out of "there may be work" and "cancel execution X". */
export class WakeChannel {
  private readonly emitter = new EventEmitter();
  private client: import("pg").Client | undefined;
  private closed = false;
  private retryTimer: NodeJS.Timeout | undefined;
  /** True while the LISTEN connection is up (or when there is none to keep). */
  connected = true;

  constructor(
    private readonly url?: string,
    private readonly log?: Logger,
  ) {
    this.emitter.setMaxListeners(0);
  }

  /** Opens the LISTEN connection (PostgreSQL only); never throws — it retries in the background. */
  async start(): Promise<void> {
    if (this.url) await this.connect(250);
  }

  private async connect(backoffMs: number): Promise<void> {
    if (this.closed || !this.url) return;
    const pg = (await import("pg")).default;
    const client = new pg.Client({ connectionString: this.url });
    const retry = () => {
      if (this.closed) return;
      this.connected = false;
      this.client = undefined;
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => void this.connect(Math.min(backoffMs * 2, 5000)), backoffMs);
      this.retryTimer.unref();
    };
    client.on("error", () => {
      client.end().catch(() => {});
      retry();
    });
    client.on("notification", (msg) => {
      if (msg.channel === JOBS_CHANNEL) this.emitter.emit("jobs", msg.payload ?? "");
      else if (msg.channel === CANCEL_CHANNEL && msg.payload) this.emitter.emit("cancel", msg.payload);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${JOBS_CHANNEL}`);
      await client.query(`LISTEN ${CANCEL_CHANNEL}`);
      if (this.closed) {
        await client.end().catch(() => {});
        return;
      }
      const wasDown = !this.connected;
      this.client = client;
      this.connected = true;
      // Anything enqueued while we were not listening was not heard: look once now.
      if (wasDown) {
        this.log?.info("execution wake-up channel reconnected");
        this.emitter.emit("jobs", "");
      }
    } catch {
      client.end().catch(() => {});
      retry();
    }
  }

  /** Signals local workers that `queue` may have work. */
  wakeJobs(queue = ""): void {
    this.emitter.emit("jobs", queue);
  }

  /** Signals local runners that an execution was cancelled. */
  wakeCancel(executionId: string): void {
    this.emitter.emit("cancel", executionId);
  }

  /** Subscribes to job wake-ups; returns the unsubscribe function. */
  onJobs(fn: (queue: string) => void): () => void {
    this.emitter.on("jobs", fn);
    return () => this.emitter.off("jobs", fn);
  }

  /** Subscribes to cancel requests; returns the unsubscribe function. */
  onCancel(fn: (executionId: string) => void): () => void {
    this.emitter.on("cancel", fn);
    return () => this.emitter.off("cancel", fn);
  }

  /** Closes the LISTEN connection. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    await this.client?.end().catch(() => {});
    this.client = undefined;
  }
}
