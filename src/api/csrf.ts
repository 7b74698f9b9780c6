/**
 * CSRF protection for requests authenticated by the session cookie (synchronizer token
 * pattern): every session has a random CSRF token, handed to the console by
 * `POST /v1/session` and `GET /v1/session`, and every state-changing request that the
 * cookie authenticates must carry it in `X-CSRF-Token`. A page on another site can make
 * the browser send the cookie (SameSite=Strict already stops that in current browsers)
 * but cannot read the token, so it cannot forge the header. Requests with a bearer token
 * are exempt: a browser never adds one on its own, so they carry no ambient authority.
 */
import type { FastifyRequest } from "fastify";
import { secretsEqual } from "../lib/bearer.js";
import { NovaError } from "../lib/errors.js";

/** The header the console sends the CSRF token in. */
export const CSRF_HEADER = "x-csrf-token";

/** Methods that change nothing: a cookie alone is enough for them. */
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/** True when a request with this method must prove it knows the session's CSRF token. */
export function needsCsrfToken(method: string): boolean {
  return !SAFE_METHODS.has(method.toUpperCase());
}

/** Throws NOVA_CSRF_REJECTED unless the request's X-CSRF-Token equals `expected` (compared in constant time). */
export function assertCsrfToken(request: Pick<FastifyRequest, "headers" | "method">, expected: string): void {
  const sent = request.headers[CSRF_HEADER];
  if (typeof sent !== "string" || sent === "")
    throw new NovaError(
      "NOVA_CSRF_REJECTED",
      `This ${request.method} request is authenticated by the session cookie but has no X-CSRF-Token header: send the csrfToken that POST /v1/session and GET /v1/session return. Nothing was done.`,
      { details: { header: "X-CSRF-Token", reason: "missing" } },
    );
  if (!secretsEqual(sent, expected))
    throw new NovaError(
      "NOVA_CSRF_REJECTED",
      "The X-CSRF-Token header does not match this session's CSRF token (fetch it again with GET /v1/session). Nothing was done.",
      { details: { header: "X-CSRF-Token", reason: "mismatch" } },
    );
}
