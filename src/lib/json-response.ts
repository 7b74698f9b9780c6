/**
 * Reading a NovaCron JSON reply (from the server or an agent): parses the body, and turns
 * an error reply `{"error": {code, message, details}}` back into the NovaError it came
 * from, so a code raised on one side of a network call reaches the other side intact.
 */
import { ERROR_CODES, type ErrorCode } from "./error-codes.js";
import { NovaError } from "./errors.js";

interface ErrorBody {
  error?: { code?: string; message?: string; details?: Record<string, unknown> };
}

/** The parsed body of `res` (undefined when empty or not JSON); throws the sender's NovaError on an error status. */
export async function readJsonReply(
  res: Response,
  options: {
    fallbackCode: ErrorCode;
    describe: (message: string) => string;
    details?: Record<string, unknown>;
  },
): Promise<unknown> {
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  if (!res.ok) {
    const e = (json as ErrorBody | undefined)?.error;
    const code: ErrorCode = e?.code && e.code in ERROR_CODES ? (e.code as ErrorCode) : options.fallbackCode;
    throw new NovaError(code, options.describe(e?.message ?? `HTTP ${res.status}`), {
      details: { ...(options.details ?? {}), ...(e?.details ?? {}) },
    });
  }
  return json;
}
