/**
 * The server API's resource bounds in one place: HTTP timeouts and the connection cap
 * (lib/http-limits.ts), request rates per token and per client address, failed
 * authentications per address, and event (SSE) streams per token and in total. Defaults
 * are generous for real clients (the suites, the CLI, agents and tools polling from one
 * address) and tight only where an attacker lives: failed authentications.
 *
 * Configured per server with `AppDeps.limits`, else `$NOVACRON_API_LIMITS` (a JSON object
 * with any of the fields below, e.g. `{"sseStreamsPerToken": 4}`); docs/api.md lists them.
 */
import type { FastifyReply } from "fastify";
import { NovaError } from "../lib/errors.js";
import { HTTP_SERVER_LIMITS, type HttpServerLimits } from "../lib/http-limits.js";

/** A token-bucket rate: `perSecond` sustained, up to `burst` at once. */
export interface Rate {
  perSecond: number;
  burst: number;
}

/** Every bound of the API. */
export interface ApiLimits extends HttpServerLimits {
  /** Requests per token (after authentication). @defaultValue 500/s, burst 5000 */
  tokenRate: Rate;
  /** Requests per client address, authenticated or not. @defaultValue 1000/s, burst 10000 */
  addressRate: Rate;
  /** Failed authentications per client address; when spent, the address gets 429 on every authenticated route. @defaultValue 0.5/s, burst 30 */
  authFailureRate: Rate;
  /** Open event streams per token. @defaultValue 16 */
  sseStreamsPerToken: number;
  /** Open event streams in total. @defaultValue 256 */
  sseStreamsTotal: number;
  /** A comment line on every stream this often (keeps proxies open, re-checks the token). @defaultValue 15000 */
  sseHeartbeatMs: number;
  /** Unsent bytes a stream may hold for a client that does not read; more and it is closed. @defaultValue 1048576 */
  sseBufferBytes: number;
}

/** The defaults. */
export const API_LIMITS = {
  ...HTTP_SERVER_LIMITS,
  tokenRate: { perSecond: 500, burst: 5000 },
  addressRate: { perSecond: 1000, burst: 10_000 },
  authFailureRate: { perSecond: 0.5, burst: 30 },
  sseStreamsPerToken: 16,
  sseStreamsTotal: 256,
  sseHeartbeatMs: 15_000,
  sseBufferBytes: 1 << 20,
} as const satisfies ApiLimits;

/** The limits to use: `given` over `$NOVACRON_API_LIMITS` over the defaults; throws NOVA_CONFIG for a bad value. */
export function resolveApiLimits(
  given: Partial<ApiLimits> = {},
  env: NodeJS.ProcessEnv = process.env,
): ApiLimits {
  let fromEnv: Partial<ApiLimits> = {};
  const raw = env.NOVACRON_API_LIMITS;
  if (raw) {
    try {
      fromEnv = JSON.parse(raw) as Partial<ApiLimits>;
    } catch (err) {
      throw new NovaError("NOVA_CONFIG", `NOVACRON_API_LIMITS is not JSON: ${(err as Error).message}`);
    }
  }
  const limits = { ...API_LIMITS, ...fromEnv, ...given } as ApiLimits;
  for (const [name, value] of Object.entries(limits)) {
    if (!(name in API_LIMITS))
      throw new NovaError(
        "NOVA_CONFIG",
        `Unknown API limit ${name}; known: ${Object.keys(API_LIMITS).join(", ")}`,
      );
    const numbers = typeof value === "object" && value !== null ? Object.values(value) : [value];
    if (numbers.length === 0 || !numbers.every((n) => typeof n === "number" && Number.isFinite(n) && n > 0))
      throw new NovaError(
        "NOVA_CONFIG",
        `API limit ${name} must be positive numbers, got ${JSON.stringify(value)}`,
      );
  }
  return limits;
}

/**
 * Token buckets by key, at most `maxKeys` of them (least recently used dropped first: a
 * dropped bucket was the least active, and a fresh one is full, so dropping only forgives).
 */
export class RateBuckets {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly rate: Rate,
    private readonly maxKeys = 10_000,
  ) {}

  /** Takes one token for `key`: 0 when allowed, else the seconds until one is available. */
  take(key: string, now = Date.now()): number {
    const b = this.refill(key, now);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return this.wait(b);
  }

  /** The seconds until `key` has a token (0 when it has one now), taking none. */
  peek(key: string, now = Date.now()): number {
    return this.buckets.has(key) ? this.wait(this.refill(key, now)) : 0;
  }

  private wait(b: { tokens: number }): number {
    return b.tokens >= 1 ? 0 : Math.max(1, Math.ceil((1 - b.tokens) / this.rate.perSecond));
  }

  private refill(key: string, now: number): { tokens: number; at: number } {
    const old = this.buckets.get(key);
    const b = old
      ? {
          tokens: Math.min(this.rate.burst, old.tokens + ((now - old.at) / 1000) * this.rate.perSecond),
          at: now,
        }
      : { tokens: this.rate.burst, at: now };
    this.buckets.delete(key);
    this.buckets.set(key, b);
    if (this.buckets.size > this.maxKeys) this.buckets.delete(this.buckets.keys().next().value as string);
    return b;
  }
}

/** Which limit refused a request (details.limit). */
export type LimitName = "token" | "address" | "auth-failures" | "sse-per-token" | "sse-total";

/** The 429 for `limit`, with Retry-After set on `reply`. */
export function rateLimited(reply: FastifyReply, limit: LimitName, retryAfterSeconds: number): NovaError {
  reply.header("retry-after", String(retryAfterSeconds));
  const what: Record<LimitName, string> = {
    token: "Too many requests with this token",
    address: "Too many requests from this address",
    "auth-failures": "Too many failed authentications from this address",
    "sse-per-token": "Too many open event streams for this token",
    "sse-total": "Too many open event streams on this server",
  };
  return new NovaError("NOVA_RATE_LIMITED", `${what[limit]}; retry in ${retryAfterSeconds} s.`, {
    details: { limit, retryAfterSeconds },
  });
}
