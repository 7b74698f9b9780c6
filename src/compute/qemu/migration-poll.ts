/**
 * Bounded polling of QMP state that wakes early on events: migration and block-job waits
 * poll a query command (the source of truth, immune to missed events) and use the
 * matching QMP events only to poll again at once, so a state change is seen within
 * milliseconds instead of a poll interval. Shared by migration.ts and block-mirror.ts.
 */
import { NovaError } from "../../lib/errors.js";
import type { QmpClient, QmpEvent } from "./qmp.js";

/** Options for pollQmp. */
export interface PollQmpOptions {
  /** Give up after this long (NOVA_TIMEOUT with details.timedOut). */
  timeoutMs: number;
  /** Longest pause between two checks. */
  pollMs: number;
  /** Says what is awaited, for error messages. */
  what: string;
  /** Ends the wait early (NOVA_ILLEGAL_STATE with details.aborted, cause = the signal's reason). */
  signal?: AbortSignal | undefined;
  /** Events for which to check again immediately. */
  wakeOn?: (ev: QmpEvent) => boolean;
}

/**
 * Runs `check` until it returns a value other than undefined, and returns that value.
 * Errors thrown by `check` end the wait and propagate, so it decides what is fatal.
 */
export async function pollQmp<T>(
  qmp: QmpClient,
  check: () => Promise<T | undefined>,
  opts: PollQmpOptions,
): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  let wake: (() => void) | undefined;
  let woken = false;
  const poke = () => {
    woken = true;
    wake?.();
  };
  const offEvent = qmp.onEvent((ev) => {
    if (opts.wakeOn?.(ev)) poke();
  });
  // A closed session makes the next execute fail at once: check again instead of sleeping.
  const offClose = qmp.onClose(poke);
  const onAbort = () => poke();
  opts.signal?.addEventListener("abort", onAbort);
  try {
    for (;;) {
      if (opts.signal?.aborted) {
        throw new NovaError("NOVA_ILLEGAL_STATE", `Stopped waiting for ${opts.what}: aborted by the caller`, {
          details: { aborted: true },
          cause: opts.signal.reason,
        });
      }
      woken = false;
      const value = await check();
      if (value !== undefined) return value;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new NovaError("NOVA_TIMEOUT", `Timed out after ${opts.timeoutMs} ms waiting for ${opts.what}`, {
          details: { timedOut: true, timeoutMs: opts.timeoutMs },
        });
      }
      // An event that arrived while check() ran must not be lost: skip the sleep.
      if (woken) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(opts.pollMs, left));
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
    }
  } finally {
    offEvent();
    offClose();
    opts.signal?.removeEventListener("abort", onAbort);
  }
}
