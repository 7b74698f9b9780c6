/**
 * Execution system configuration: per-SLA-class limits (attempts, timeouts, leases,
 * approval windows), retry backoff, and the worker pool's sizing. Typed once with
 * defaults; the server takes overrides from `--exec-config <file.json>`.
 */
import { readFile } from "node:fs/promises";
import { describeError, NovaError } from "../lib/errors.js";

/** SLA classes: how patient an execution is and how hard it retries. */
export type SlaClass = "fast" | "medium" | "long";

/** Limits of one SLA class. */
export interface SlaLimits {
  /** Attempts before the execution goes to the dead-letter queue. */
  maxAttempts: number;
  /** Default time limit of one step (a step may set its own `timeoutSeconds`). */
  stepTimeoutMs: number;
  /** Time limit of the whole run, from its first start. */
  executionTimeoutMs: number;
  /** Job lease: a worker that stops renewing loses the job after this long. */
  leaseMs: number;
  /** How long an approval may wait before the execution times out. */
  approvalTimeoutMs: number;
  /** After cancel, how long a step may take to stop cooperatively before it is abandoned. */
  cancelGraceMs: number;
}

/** Retry backoff: min(maxMs, baseMs * 2^(attempt-1)), times a random factor in [1-jitter, 1]. */
export interface BackoffOptions {
  /** @defaultValue 1000 */
  baseMs: number;
  /** @defaultValue 60000 */
  maxMs: number;
  /** Fraction of the delay that is randomised. @defaultValue 0.5 */
  jitter: number;
}

/** Worker pool sizing and timing. */
export interface PoolOptions {
  /** Slots kept even when idle. @defaultValue 1 */
  minWorkers: number;
  /** Slots at most, reached when the queue is deep. @defaultValue 8 */
  maxWorkers: number;
  /** Poll interval when no notification arrives (LISTEN/NOTIFY is the fast path). @defaultValue 1000 */
  pollIntervalMs: number;
  /** How often expired leases are returned to the queue. @defaultValue 1000 */
  reapIntervalMs: number;
  /** How often the pool resizes. @defaultValue 1000 */
  scaleIntervalMs: number;
  /** A slot unused for this long is removed (down to minWorkers). @defaultValue 10000 */
  idleShrinkMs: number;
  /** How long shutdown waits for running jobs before handing them back. @defaultValue 10000 */
  drainMs: number;
}

/** Everything configurable. */
export interface ExecConfig {
  sla: Record<SlaClass, SlaLimits>;
  backoff: BackoffOptions;
  pool: PoolOptions;
  /** Duplicate submissions within this window return the first execution. @defaultValue 86400000 */
  idempotencyWindowMs: number;
  /** Per step kind, a default step timeout that beats the SLA class's (e.g. migrations take long). */
  stepTimeoutByKindMs: Partial<Record<string, number>>;
}

/** The defaults. */
export const DEFAULT_EXEC_CONFIG = {
  sla: {
    fast: {
      maxAttempts: 5,
      stepTimeoutMs: 60_000,
      executionTimeoutMs: 10 * 60_000,
      leaseMs: 5_000,
      approvalTimeoutMs: 15 * 60_000,
      cancelGraceMs: 5_000,
    },
    medium: {
      maxAttempts: 3,
      stepTimeoutMs: 10 * 60_000,
      executionTimeoutMs: 2 * 3_600_000,
      leaseMs: 10_000,
      approvalTimeoutMs: 24 * 3_600_000,
      cancelGraceMs: 15_000,
    },
    long: {
      maxAttempts: 2,
      stepTimeoutMs: 2 * 3_600_000,
      executionTimeoutMs: 24 * 3_600_000,
      leaseMs: 15_000,
      approvalTimeoutMs: 72 * 3_600_000,
      cancelGraceMs: 60_000,
    },
  },
  backoff: { baseMs: 1000, maxMs: 60_000, jitter: 0.5 },
  pool: {
    minWorkers: 1,
    maxWorkers: 8,
    pollIntervalMs: 1000,
    reapIntervalMs: 1000,
    scaleIntervalMs: 1000,
    idleShrinkMs: 10_000,
    drainMs: 10_000,
  },
  idempotencyWindowMs: 24 * 3_600_000,
  stepTimeoutByKindMs: { "vm.migrate": 3_600_000 },
} satisfies ExecConfig;

/** Partial overrides, merged one level deep per section. */
export interface ExecConfigOverrides {
  sla?: Partial<Record<SlaClass, Partial<SlaLimits>>>;
  backoff?: Partial<BackoffOptions>;
  pool?: Partial<PoolOptions>;
  idempotencyWindowMs?: number;
  stepTimeoutByKindMs?: Partial<Record<string, number>>;
}

/** Defaults with overrides applied; refuses nonsense (min > max, zero leases). */
export function resolveExecConfig(o: ExecConfigOverrides = {}): ExecConfig {
  const d = DEFAULT_EXEC_CONFIG;
  const cfg: ExecConfig = {
    sla: {
      fast: { ...d.sla.fast, ...o.sla?.fast },
      medium: { ...d.sla.medium, ...o.sla?.medium },
      long: { ...d.sla.long, ...o.sla?.long },
    },
    backoff: { ...d.backoff, ...o.backoff },
    pool: { ...d.pool, ...o.pool },
    idempotencyWindowMs: o.idempotencyWindowMs ?? d.idempotencyWindowMs,
    stepTimeoutByKindMs: { ...d.stepTimeoutByKindMs, ...o.stepTimeoutByKindMs },
  };
  if (cfg.pool.minWorkers < 0 || cfg.pool.maxWorkers < 1 || cfg.pool.minWorkers > cfg.pool.maxWorkers) {
    throw new NovaError(
      "NOVA_CONFIG",
      `Execution pool size is invalid: minWorkers ${cfg.pool.minWorkers}, maxWorkers ${cfg.pool.maxWorkers}. Need 0 <= min <= max and max >= 1.`,
    );
  }
  for (const [name, s] of Object.entries(cfg.sla)) {
    if (s.leaseMs < 300 || s.maxAttempts < 1) {
      throw new NovaError(
        "NOVA_CONFIG",
        `SLA class ${name}: leaseMs must be >= 300 and maxAttempts >= 1 (got ${s.leaseMs}, ${s.maxAttempts}).`,
      );
    }
  }
  return cfg;
}

/** Reads overrides from a JSON file. */
export async function loadExecConfig(file: string): Promise<ExecConfig> {
  let raw: string;
  try {
    raw = await readFile(file, "utf8");
  } catch (err) {
    throw new NovaError("NOVA_CONFIG", `Failed reading execution config ${file}: ${describeError(err)}`);
  }
  try {
    return resolveExecConfig(JSON.parse(raw) as ExecConfigOverrides);
  } catch (err) {
    if (err instanceof NovaError) throw err;
    throw new NovaError("NOVA_CONFIG", `Execution config ${file} is not valid JSON: ${describeError(err)}`);
  }
}

/** The step time limit for a kind in a class (a step's own timeoutSeconds wins). */
export function stepTimeoutMs(cfg: ExecConfig, sla: SlaClass, kind: string, own: number | undefined): number {
  if (own !== undefined) return own * 1000;
  return cfg.stepTimeoutByKindMs[kind] ?? cfg.sla[sla].stepTimeoutMs;
}

/**
 * The delay before retry number `attempt` (1-based: the delay after the first failure).
 * `random` is injectable so the bounds can be tested.
 */
export function backoffMs(b: BackoffOptions, attempt: number, random: () => number = Math.random): number {
  const exp = Math.min(b.maxMs, b.baseMs * 2 ** Math.max(0, attempt - 1));
  const jitter = Math.min(1, Math.max(0, b.jitter));
  return Math.round(exp * (1 - jitter * random()));
}
