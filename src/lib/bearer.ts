/**
 * Bearer-token credentials on HTTP requests, shared by the server's API and the agent's:
 * reading the token from the Authorization header, and comparing secrets in constant time.
 */
import { timingSafeEqual } from "node:crypto";
import type { FastifyRequest } from "fastify";
import { NovaError } from "./errors.js";

/** Extracts the bearer token, or throws 401 saying how to send one. */
export function bearerToken(request: Pick<FastifyRequest, "headers">): string {
  const header = request.headers.authorization;
  if (!header) {
    throw new NovaError(
      "NOVA_UNAUTHENTICATED",
      "Missing bearer token: send 'Authorization: Bearer <token>' (novacron login stores one).",
    );
  }
  const match = /^Bearer\s+(\S+)$/i.exec(header);
  if (!match)
    throw new NovaError("NOVA_UNAUTHENTICATED", "Malformed Authorization header: expected 'Bearer <token>'.");
  return match[1]!;
}

/** Constant-time comparison of two secrets. */
export function secretsEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a);
  const bb = Buffer.from(b);
  return ab.length === bb.length && timingSafeEqual(ab, bb);
}
