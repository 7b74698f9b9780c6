/**
 * NovaCron's typed errors. Every error a user can see carries a stable `NOVA_…` code,
 * an HTTP status, a message that says what failed and how to fix it, optional details,
 * and whether retrying can help. The registry of codes lives in `error-codes.ts` and is
 * documented in docs/errors.md; HTTP mapping happens in one place (http-errors.ts).
 */
import type { ErrorCode } from "./error-codes.js";
import { ERROR_CODES } from "./error-codes.js";

/** Options for a NovaError beyond code and message. */
export interface NovaErrorOptions {
  /** Machine-readable context (ids, states, sizes) returned to API clients. */
  details?: Record<string, unknown>;
  /** The underlying error, kept for logs. */
  cause?: unknown;
  /** Overrides the registry's retryable flag for this instance. */
  retryable?: boolean;
}

/** An error with a stable code, an HTTP status and a user-actionable message. */
export class NovaError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: Record<string, unknown>;
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options: NovaErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "NovaError";
    this.code = code;
    const entry = ERROR_CODES[code];
    this.status = entry.status;
    this.details = options.details ?? {};
    this.retryable = options.retryable ?? entry.retryable;
  }

  /** The JSON body every API error response carries. */
  toJSON(): { error: { code: string; message: string; details: Record<string, unknown> } } {
    return { error: { code: this.code, message: this.message, details: this.details } };
  }
}

/** True when `err` is a NovaError with the given code (or any code when omitted). */
export function isNovaError(err: unknown, code?: ErrorCode): err is NovaError {
  return err instanceof NovaError && (code === undefined || err.code === code);
}

/** A short one-line description of any thrown value, for logs and wrapped messages. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
