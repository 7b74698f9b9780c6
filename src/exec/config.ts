/**
 * Execution system configuration: per-SLA-class limits (attempts, timeouts, leases,
 * approval windows), retry backoff, the worker pool's sizing and how long finished work is
 * kept. Typed once with defaults. The server layers its sources: built-in defaults, then
 * a JSON file (`--exec-config <file>` or $NOVACRON_EXEC_CONFIG), then flags
 * (`--exec-workers-min`, `--exec-workers-max`); errors name the source to fix.
 */
import { readFile } from "node:fs/promises";
import { type TSchema, Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import type { SlaClass } from "../api/types/executions.js";
import { describeError, NovaError } from "../lib/errors.js";

export type { SlaClass };

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

/** How long finished work is kept, and how the pruner deletes it (src/exec/pruner.ts). */
export interface RetentionOptions {
  /**
   * Completed, cancelled and rejected executions (with their steps and logs) and completed
   * queue jobs are deleted this long after they finished. Failed, partial and timed-out
   * ones wait in the dead-letter queue for an operator and are never pruned.
   * @defaultValue 604800000 (7 days)
   */
  finishedMs: number;
  /** How often the pruner runs. @defaultValue 300000 */
  pruneIntervalMs: number;
  /** Rows deleted per statement, so no prune holds locks or bloats WAL for long. @defaultValue 500 */
  batchSize: number;
  /** Statements per table per run; the rest waits for the next run. @defaultValue 20 */
  maxBatchesPerRun: number;
}

/** Everything configurable. */
export interface ExecConfig {
  sla: Record<SlaClass, SlaLimits>;
  backoff: BackoffOptions;
  pool: PoolOptions;
  retention: RetentionOptions;
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
  retention: { finishedMs: 7 * 86_400_000, pruneIntervalMs: 300_000, batchSize: 500, maxBatchesPerRun: 20 },
  idempotencyWindowMs: 24 * 3_600_000,
  stepTimeoutByKindMs: { "vm.migrate": 3_600_000 },
} satisfies ExecConfig;

/** Partial overrides, merged one level deep per section. */
export interface ExecConfigOverrides {
  sla?: Partial<Record<SlaClass, Partial<SlaLimits>>>;
  backoff?: Partial<BackoffOptions>;
  pool?: Partial<PoolOptions>;
  retention?: Partial<RetentionOptions>;
  idempotencyWindowMs?: number;
  stepTimeoutByKindMs?: Partial<Record<string, number>>;
}

const ms = (minimum = 1) => Type.Optional(Type.Integer({ minimum }));
const SlaOverrides = Type.Object(
  {
    maxAttempts: ms(1),
    stepTimeoutMs: ms(),
    executionTimeoutMs: ms(),
    leaseMs: ms(300),
    approvalTimeoutMs: ms(),
    cancelGraceMs: ms(0),
  },
  { additionalProperties: false },
);

/** The config file's schema: a typo'd key is refused rather than silently ignored. */
export const ExecConfigFile = Type.Object(
  {
    sla: Type.Optional(
      Type.Object(
        {
          fast: Type.Optional(SlaOverrides),
          medium: Type.Optional(SlaOverrides),
          long: Type.Optional(SlaOverrides),
        },
        { additionalProperties: false },
      ),
    ),
    backoff: Type.Optional(
      Type.Object(
        { baseMs: ms(), maxMs: ms(), jitter: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })) },
        { additionalProperties: false },
      ),
    ),
    pool: Type.Optional(
      Type.Object(
        {
          minWorkers: ms(0),
          maxWorkers: ms(1),
          pollIntervalMs: ms(10),
          reapIntervalMs: ms(10),
          scaleIntervalMs: ms(10),
          idleShrinkMs: ms(0),
          drainMs: ms(0),
        },
        { additionalProperties: false },
      ),
    ),
    retention: Type.Optional(
      Type.Object(
        { finishedMs: ms(0), pruneIntervalMs: ms(100), batchSize: ms(1), maxBatchesPerRun: ms(1) },
        { additionalProperties: false },
      ),
    ),
    idempotencyWindowMs: ms(1000),
    stepTimeoutByKindMs: Type.Optional(Type.Record(Type.String(), Type.Integer({ minimum: 1 }))),
  },
  { additionalProperties: false },
) satisfies TSchema;

/** Flags that override the file (`novacron server --exec-workers-min/--exec-workers-max`). */
export interface ExecConfigFlags {
  workersMin?: number;
  workersMax?: number;
}

/** Where each layer came from, so an error can say which one to fix. */
export interface ExecConfigSources {
  /** The config file and what it set. */
  file?: { path: string; overrides: ExecConfigOverrides };
  flags?: ExecConfigFlags;
}

/** The flag that sets a pool field, for messages. */
const POOL_FLAGS: Partial<Record<keyof PoolOptions, keyof ExecConfigFlags>> = {
  minWorkers: "workersMin",
  maxWorkers: "workersMax",
};
const FLAG_NAMES: Record<keyof ExecConfigFlags, string> = {
  workersMin: "--exec-workers-min",
  workersMax: "--exec-workers-max",
};

/**
 * Defaults, then the file, then the flags; refuses nonsense (min > max, short leases),
 * naming the flag or file key that set the offending value and how to fix it.
 */
export function buildExecConfig(src: ExecConfigSources = {}): ExecConfig {
  const o = src.file?.overrides ?? {};
  const flags = src.flags ?? {};
  const pool: Partial<PoolOptions> = { ...o.pool };
  if (flags.workersMin !== undefined) pool.minWorkers = flags.workersMin;
  if (flags.workersMax !== undefined) pool.maxWorkers = flags.workersMax;
  const d = DEFAULT_EXEC_CONFIG;
  const cfg: ExecConfig = {
    sla: {
      fast: { ...d.sla.fast, ...o.sla?.fast },
      medium: { ...d.sla.medium, ...o.sla?.medium },
      long: { ...d.sla.long, ...o.sla?.long },
    },
    backoff: { ...d.backoff, ...o.backoff },
    pool: { ...d.pool, ...pool },
    retention: { ...d.retention, ...o.retention },
    idempotencyWindowMs: o.idempotencyWindowMs ?? d.idempotencyWindowMs,
    stepTimeoutByKindMs: { ...d.stepTimeoutByKindMs, ...o.stepTimeoutByKindMs },
  };
  const poolSource = (field: keyof PoolOptions): string => {
    const flag = POOL_FLAGS[field];
    if (flag && flags[flag] !== undefined) return FLAG_NAMES[flag];
    if (src.file && o.pool?.[field] !== undefined) return `pool.${field} in ${src.file.path}`;
    return "the default";
  };
  const { minWorkers, maxWorkers } = cfg.pool;
  if (!Number.isInteger(minWorkers) || minWorkers < 0) {
    throw new NovaError(
      "NOVA_CONFIG",
      `Execution pool minWorkers must be a whole number >= 0, got ${minWorkers} (from ${poolSource("minWorkers")}).`,
      { details: { minWorkers, source: poolSource("minWorkers") } },
    );
  }
  if (!Number.isInteger(maxWorkers) || maxWorkers < 1) {
    throw new NovaError(
      "NOVA_CONFIG",
      `Execution pool maxWorkers must be a whole number >= 1, got ${maxWorkers} (from ${poolSource("maxWorkers")}).`,
      { details: { maxWorkers, source: poolSource("maxWorkers") } },
    );
  }
  if (minWorkers > maxWorkers) {
    throw new NovaError(
      "NOVA_CONFIG",
      `Execution pool minWorkers ${minWorkers} (from ${poolSource("minWorkers")}) is larger than maxWorkers ${maxWorkers} (from ${poolSource("maxWorkers")}). Lower --exec-workers-min or raise --exec-workers-max (or pool.minWorkers / pool.maxWorkers in the config file).`,
      {
        details: {
          minWorkers,
          maxWorkers,
          minSource: poolSource("minWorkers"),
          maxSource: poolSource("maxWorkers"),
        },
      },
    );
  }
  for (const [name, s] of Object.entries(cfg.sla)) {
    if (s.leaseMs < 300 || s.maxAttempts < 1) {
      throw new NovaError(
        "NOVA_CONFIG",
        `SLA class ${name}: leaseMs must be >= 300 and maxAttempts >= 1 (got ${s.leaseMs}, ${s.maxAttempts})${src.file ? `; fix sla.${name} in ${src.file.path}` : ""}.`,
      );
    }
  }
  if (cfg.backoff.baseMs > cfg.backoff.maxMs) {
    throw new NovaError(
      "NOVA_CONFIG",
      `Retry backoff baseMs ${cfg.backoff.baseMs} is larger than maxMs ${cfg.backoff.maxMs}${src.file ? `; fix backoff in ${src.file.path}` : ""}.`,
    );
  }
  return cfg;
}

/** Defaults with overrides applied (no file, no flags: tests and embedders). */
export function resolveExecConfig(o: ExecConfigOverrides = {}): ExecConfig {
  return buildExecConfig({ file: { path: "the execution config", overrides: o } });
}

/** Parses and checks a config file's text; errors name the file and the key. */
export function parseExecConfigFile(file: string, raw: string): ExecConfigOverrides {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (err) {
    throw new NovaError("NOVA_CONFIG", `Execution config ${file} is not valid JSON: ${describeError(err)}`);
  }
  const first = [...Value.Errors(ExecConfigFile, json)][0];
  if (first) {
    const key = first.path.replace(/^\//, "").replaceAll("/", ".") || "(top level)";
    const problem =
      first.message === "Unexpected property"
        ? "is not a setting (see docs/executions.md, Configuration)"
        : first.message.toLowerCase();
    throw new NovaError("NOVA_CONFIG", `Execution config ${file}: ${key} ${problem}.`, {
      details: { file, key },
    });
  }
  return json as ExecConfigOverrides;
}

/** Reads a config file's overrides. */
export async function readExecConfigFile(file: string): Promise<ExecConfigOverrides> {
  let raw: string;
  try {
    raw = await readFile(file, "utf8");
  } catch (err) {
    throw new NovaError("NOVA_CONFIG", `Failed reading execution config ${file}: ${describeError(err)}`);
  }
  return parseExecConfigFile(file, raw);
}

/** The configuration from a file (optional) and flags over the defaults. */
export async function loadExecConfig(file?: string, flags: ExecConfigFlags = {}): Promise<ExecConfig> {
  return buildExecConfig({
    ...(file ? { file: { path: file, overrides: await readExecConfigFile(file) } } : {}),
    flags,
  });
}

/** Parses a worker-count flag; `min` is 0 for the minimum and 1 for the maximum. */
export function parseWorkersFlag(value: string, flag: string, min: 0 | 1): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min) {
    throw new NovaError(
      "NOVA_CONFIG",
      `${flag} must be a whole number >= ${min}, got "${value}". Example: ${flag} ${min === 0 ? 1 : 8}`,
      { details: { flag, value } },
    );
  }
  return n;
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
