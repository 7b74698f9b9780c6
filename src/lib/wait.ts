/** Bounded waiting for a condition, used instead of fixed sleeps. */
import { setTimeout as sleep } from "node:timers/promises";
import { NovaError } from "./errors.js";

/** Options for waitFor. */
export interface WaitForOptions {
  /** Give up after this long. @defaultValue 10000 */
  timeoutMs?: number;
  /** Poll interval. @defaultValue 50 */
  intervalMs?: number;
  /** Says what was awaited, for the timeout message. */
  what?: string;
  /** Aborts the wait early. */
  signal?: AbortSignal;
}

/**
 * Polls `check` until it returns a value other than undefined/false, then returns that
 * value; throws NOVA_TIMEOUT naming `what` when the bound passes.
 */
export async function waitFor<T>(
  check: () => Promise<T | undefined | false> | T | undefined | false,
  options: WaitForOptions = {},
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const intervalMs = options.intervalMs ?? 50;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    options.signal?.throwIfAborted();
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const suffix = lastError instanceof Error ? ` (last error: ${lastError.message})` : "";
      throw new NovaError(
        "NOVA_TIMEOUT",
        `Timed out after ${timeoutMs} ms waiting for ${options.what ?? "a condition"}${suffix}`,
      );
    }
    await sleep(intervalMs, undefined, options.signal ? { signal: options.signal } : undefined);
  }
}

/**
 * `promise`, or the error `expired()` makes when it has not settled within `ms`. The
 * timer is cleared either way; the promise itself is not cancelled (close what it waits on).
 */
export function withDeadline<T>(promise: Promise<T>, ms: number, expired: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(expired()), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}
