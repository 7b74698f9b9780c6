/**
 * Reading a reply from another NovaCron process (the server, an agent) or an outside
 * service, always with a byte cap: a peer cannot make the reader buffer more than it asked
 * for. A declared Content-Length over the cap is refused before any body byte is read; an
 * undeclared (chunked) body is streamed and the transfer aborted as soon as it passes the
 * cap. Over the cap is NOVA_REPLY_TOO_LARGE, naming the peer and the cap.
 *
 * `readJsonReply` also turns an error reply `{"error": {code, message, details}}` back into
 * the NovaError it came from, so a code raised on one side of a network call reaches the
 * other side intact.
 */
import { ERROR_CODES, type ErrorCode } from "./error-codes.js";
import { NovaError } from "./errors.js";

/** The default cap on a JSON reply: far above any NovaCron reply, far below a memory problem. */
export const JSON_REPLY_LIMIT_BYTES = 16 * 1024 * 1024;

/** What every bounded read takes. */
export interface BoundedReadOptions {
  /** Who sent the reply, for the error (e.g. `host h1`). @defaultValue the reply's origin */
  peer?: string;
  /** The most bytes accepted. @defaultValue JSON_REPLY_LIMIT_BYTES */
  maxBytes?: number;
}

interface ErrorBody {
  error?: { code?: string; message?: string; details?: Record<string, unknown> };
}

function peerOf(res: Response, peer: string | undefined): string {
  if (peer) return peer;
  try {
    return new URL(res.url).origin;
  } catch {
    return "the peer";
  }
}

function tooLarge(res: Response, peer: string, maxBytes: number, extra: Record<string, unknown>): NovaError {
  return new NovaError(
    "NOVA_REPLY_TOO_LARGE",
    `The reply from ${peer} is larger than the ${maxBytes} bytes accepted; the transfer was aborted.`,
    { details: { peer, limitBytes: maxBytes, status: res.status, ...extra } },
  );
}

/** Drops the rest of a body we will not read (frees the connection). */
function discard(res: Response): void {
  res.body?.cancel().catch(() => {});
}

/**
 * The body of `res` as text, at most `maxBytes` bytes of it; NOVA_REPLY_TOO_LARGE (after
 * aborting the transfer) when the peer declares or sends more.
 */
export async function readBoundedText(res: Response, options: BoundedReadOptions = {}): Promise<string> {
  const maxBytes = options.maxBytes ?? JSON_REPLY_LIMIT_BYTES;
  const peer = peerOf(res, options.peer);
  const declared = Number(res.headers.get("content-length") ?? Number.NaN);
  if (declared > maxBytes) {
    discard(res);
    throw tooLarge(res, peer, maxBytes, { declaredBytes: declared });
  }
  const { text, truncated } = await readTextPrefix(res, maxBytes);
  // More than the cap arrived: the prefix is dropped, the rest was never read.
  if (truncated) throw tooLarge(res, peer, maxBytes, { receivedBytes: maxBytes + 1 });
  return text;
}

/**
 * At most the first `maxBytes` bytes of the body as text, the rest dropped unread (for
 * replies kept only as a truncated excerpt, such as an outside service's answer).
 * `truncated` says whether anything was dropped.
 */
export async function readTextPrefix(
  res: Response,
  maxBytes: number,
): Promise<{ text: string; truncated: boolean }> {
  if (!res.body) return { text: "", truncated: false };
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let received = 0;
  let text = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return { text: text + decoder.decode(), truncated: false };
    const room = maxBytes - received;
    if (value.byteLength > room) {
      // A cut inside a multi-byte character leaves it out (the decoder holds it back).
      text += decoder.decode(value.subarray(0, room), { stream: true });
      await reader.cancel().catch(() => {});
      return { text, truncated: true };
    }
    received += value.byteLength;
    text += decoder.decode(value, { stream: true });
  }
}

/** The body parsed as JSON (undefined when empty or not JSON), read with the byte cap. */
export async function readBoundedJson(res: Response, options: BoundedReadOptions = {}): Promise<unknown> {
  const text = await readBoundedText(res, options);
  try {
    return text ? JSON.parse(text) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The parsed body of `res` (undefined when empty or not JSON); throws the sender's
 * NovaError on an error status, and NOVA_REPLY_TOO_LARGE over the byte cap.
 */
export async function readJsonReply(
  res: Response,
  options: BoundedReadOptions & {
    fallbackCode: ErrorCode;
    describe: (message: string) => string;
    details?: Record<string, unknown>;
  },
): Promise<unknown> {
  let json: unknown;
  try {
    json = await readBoundedJson(res, options);
  } catch (err) {
    // The caller's context (which host, which call) belongs on this error too.
    if (err instanceof NovaError)
      throw new NovaError(err.code, options.describe(err.message), {
        details: { ...options.details, ...err.details },
      });
    throw err;
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
