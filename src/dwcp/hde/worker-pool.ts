/**
 * The pool of HDE worker threads (docs/dwcp.md §7.8): owns the threads, hands each job to
 * the least busy one, moves buffers by transfer, and turns a thread's failure into a
 * NOVA_DWCP_WORKER rejection of every job it held, so a page stream fails instead of
 * waiting for an answer that will never come. Ordering and bounds are the callers' (the
 * page sender and receiver keep a bounded number of batches in flight and apply results
 * in stream order); the pool only computes.
 *
 * One pool serves the whole process (`HdeWorkerPool.shared()`): every page stream of
 * every session shares the host's cores instead of each stream bringing threads.
 */
import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import type { ErrorCode } from "../../lib/error-codes.js";
import { ERROR_CODES } from "../../lib/error-codes.js";
import { NovaError } from "../../lib/errors.js";
import {
  asBuffer,
  type DecodedSections,
  type EncodedSection,
  type JobReply,
  type JobRequest,
} from "./hde-jobs.js";

/** Largest pool the default sizing picks: past this the event loop, not hashing, limits a relay. */
export const MAX_DEFAULT_THREADS = 8;

/** Environment variable that sets the shared pool's size (0 = every job inline). */
export const THREADS_ENV = "NOVACRON_HDE_THREADS";

/** Pool options. */
export interface HdeWorkerPoolOptions {
  /** Worker threads; 0 makes the pool report `threads === 0`, and callers then work inline. */
  threads: number;
  /** The worker script. @defaultValue hde-worker.js next to this module */
  workerUrl?: URL;
}

type Pending = { resolve: (r: JobReply) => void; reject: (e: Error) => void };

interface Slot {
  worker: Worker;
  pending: Map<number, Pending>;
}

/** Worker threads for HDE's per-batch work. */
export class HdeWorkerPool {
  private static sharedPool: HdeWorkerPool | null = null;
  private readonly slots: Slot[] = [];
  private readonly workerUrl: URL;
  private nextId = 1;
  private closed = false;
  readonly threads: number;

  constructor(options: HdeWorkerPoolOptions) {
    if (!Number.isInteger(options.threads) || options.threads < 0)
      throw new NovaError(
        "NOVA_BAD_REQUEST",
        `HDE worker threads must be a whole number >= 0, got ${options.threads}`,
      );
    this.threads = options.threads;
    this.workerUrl = options.workerUrl ?? defaultWorkerUrl();
  }

  /**
   * The process's pool: `NOVACRON_HDE_THREADS` threads when set, else one per core but
   * the event loop's own (at least 1, at most 8). It is inline (0) when the worker script
   * is not there, i.e. when the TypeScript sources run directly (unit tests).
   */
  static shared(): HdeWorkerPool {
    HdeWorkerPool.sharedPool ??= new HdeWorkerPool({
      threads: existsSync(fileURLToPath(defaultWorkerUrl())) ? HdeWorkerPool.defaultThreads() : 0,
    });
    return HdeWorkerPool.sharedPool;
  }

  /** The size `shared()` uses on this host. */
  static defaultThreads(env: NodeJS.ProcessEnv = process.env): number {
    const set = env[THREADS_ENV];
    if (set !== undefined && set !== "") {
      const n = Number(set);
      if (!Number.isInteger(n) || n < 0 || n > 256)
        throw new NovaError("NOVA_CONFIG", `${THREADS_ENV} must be a whole number 0-256, got "${set}"`);
      return n;
    }
    return Math.min(MAX_DEFAULT_THREADS, Math.max(1, availableParallelism() - 1));
  }

  /** Jobs submitted and not yet answered, over all threads. */
  get busy(): number {
    let n = 0;
    for (const s of this.slots) n += s.pending.size;
    return n;
  }

  /** Encodes a batch's section A at `level`. `raw` must own its ArrayBuffer: it is transferred. */
  async encode(level: number, raw: Buffer): Promise<EncodedSection> {
    const r = await this.submit({ id: 0, op: "encode", level, raw }, [raw.buffer as ArrayBuffer]);
    if (!r.ok || r.op !== "encode") throw unexpected();
    return { codec: r.codec, body: asBuffer(r.body), ns: r.ns };
  }

  /** Decompresses a BATCH message and hashes its full pages. `msg` is copied, not taken. */
  async decode(msg: Buffer, maxRawA: number): Promise<DecodedSections> {
    const copy = new Uint8Array(new ArrayBuffer(msg.length));
    copy.set(msg);
    const r = await this.submit({ id: 0, op: "decode", msg: copy, maxRawA }, [copy.buffer]);
    if (!r.ok || r.op !== "decode") throw unexpected();
    return { a: asBuffer(r.a), b: asBuffer(r.b), hashes: asBuffer(r.hashes) };
  }

  /** Stops every thread; jobs still running fail with NOVA_DWCP_WORKER. */
  async close(): Promise<void> {
    this.closed = true;
    if (HdeWorkerPool.sharedPool === this) HdeWorkerPool.sharedPool = null;
    const slots = this.slots.splice(0);
    for (const s of slots) failAll(s, new NovaError("NOVA_DWCP_WORKER", "The HDE worker pool was closed"));
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }

  private submit(req: JobRequest, transfer: ArrayBuffer[]): Promise<JobReply> {
    if (this.closed)
      return Promise.reject(new NovaError("NOVA_DWCP_WORKER", "The HDE worker pool was closed"));
    if (this.threads === 0)
      return Promise.reject(
        new NovaError("NOVA_ILLEGAL_STATE", "An inline HDE pool (0 threads) runs no jobs"),
      );
    const slot = this.pick();
    const id = this.nextId++;
    req.id = id;
    return new Promise<JobReply>((resolve, reject) => {
      slot.pending.set(id, { resolve, reject });
      // A thread with work keeps the process alive; an idle one must not.
      if (slot.pending.size === 1) slot.worker.ref();
      try {
        slot.worker.postMessage(req, transfer);
      } catch (err) {
        slot.pending.delete(id);
        reject(new NovaError("NOVA_DWCP_WORKER", `Could not hand a job to an HDE worker: ${String(err)}`));
      }
    }).then((r) => {
      if (r.ok) return r;
      const code = (r.code in ERROR_CODES ? r.code : "NOVA_DWCP_WORKER") as ErrorCode;
      throw new NovaError(code, r.message);
    });
  }

  /** The least busy thread, starting one while fewer than `threads` run. */
  private pick(): Slot {
    let best: Slot | undefined;
    for (const s of this.slots) if (!best || s.pending.size < best.pending.size) best = s;
    if (best && (best.pending.size === 0 || this.slots.length >= this.threads)) return best;
    return this.spawn();
  }

  private spawn(): Slot {
    const worker = new Worker(this.workerUrl);
    worker.unref();
    const slot: Slot = { worker, pending: new Map() };
    this.slots.push(slot);
    const drop = (err: NovaError) => {
      const i = this.slots.indexOf(slot);
      if (i !== -1) this.slots.splice(i, 1);
      failAll(slot, err);
    };
    worker.on("message", (r: JobReply) => {
      const p = slot.pending.get(r.id);
      if (!p) return;
      slot.pending.delete(r.id);
      if (slot.pending.size === 0) worker.unref();
      p.resolve(r);
    });
    worker.on("error", (err) => {
      drop(new NovaError("NOVA_DWCP_WORKER", `An HDE worker thread failed: ${err.message}`, { cause: err }));
      void worker.terminate();
    });
    worker.on("exit", (code) => {
      drop(new NovaError("NOVA_DWCP_WORKER", `An HDE worker thread exited (code ${code})`));
    });
    return slot;
  }
}

function failAll(slot: Slot, err: Error): void {
  const pending = [...slot.pending.values()];
  slot.pending.clear();
  for (const p of pending) p.reject(err);
}

function unexpected(): NovaError {
  return new NovaError("NOVA_DWCP_WORKER", "An HDE worker answered a job with the wrong kind of result");
}

function defaultWorkerUrl(): URL {
  return new URL("./hde-worker.js", import.meta.url);
}
