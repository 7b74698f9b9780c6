/**
 * The web console at `/`, answered where no API route matched (the not-found handler's
 * fallback), so the API's router, its 404s and its 414s are exactly as without it. Its
 * files need no authentication (they hold no data; the console then calls the API with
 * its credentials); every answer carries a strict Content-Security-Policy (scripts and
 * styles only from this origin, no inline script, no framing) and the other security
 * headers. Any GET that is not an API path and not a file gets index.html, so the
 * console's own paths (/vms/web-1) load it; API paths (/v1, /metrics, /healthz, /agent)
 * and missing hashed assets keep the API's 404.
 */
import type { FastifyReply, FastifyRequest } from "fastify";
import type { NotFoundFallback } from "../../lib/http-errors.js";
import { type ConsoleAsset, type ConsoleAssets, chooseEncoding } from "../console-assets.js";

/** The Content-Security-Policy of every console answer. */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

const SECURITY_HEADERS = {
  "content-security-policy": CONSOLE_CSP,
  "x-frame-options": "DENY",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
  "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
} as const;

/** Paths that belong to the API and never get the console. */
const API_PREFIXES = ["/v1", "/metrics", "/healthz", "/health", "/agent"];

function isApiPath(p: string): boolean {
  return API_PREFIXES.some((prefix) => p === prefix || p.startsWith(`${prefix}/`));
}

function send(
  reply: FastifyReply,
  asset: ConsoleAsset,
  acceptEncoding: string | undefined,
  ifNoneMatch: string | undefined,
) {
  // The not-found handler's reply starts as a 404.
  reply.status(200);
  reply.headers(SECURITY_HEADERS);
  reply.header("content-type", asset.type);
  reply.header("vary", "accept-encoding");
  reply.header("etag", asset.etag);
  reply.header("cache-control", asset.immutable ? "public, max-age=31536000, immutable" : "no-cache");
  if (ifNoneMatch?.split(",").some((t) => t.trim() === asset.etag)) {
    void reply.status(304).send();
    return;
  }
  const encoding = chooseEncoding(acceptEncoding, asset);
  if (encoding) reply.header("content-encoding", encoding);
  void reply.send(encoding === "br" ? asset.br : encoding === "gzip" ? asset.gzip : asset.body);
}

/** The not-found fallback that serves the console from `assets`. */
export function consoleFallback(assets: ConsoleAssets): NotFoundFallback {
  const index = assets.get("/index.html");
  if (!index) throw new Error("the console has no index.html");
  return (req: FastifyRequest, reply: FastifyReply) => {
    if (req.method !== "GET" && req.method !== "HEAD") return false;
    const p = req.url.split("?")[0] ?? "/";
    if (isApiPath(p)) return false;
    const asset = assets.get(p);
    if (!asset && p.startsWith("/assets/")) return false;
    const accept = req.headers["accept-encoding"];
    const inm = req.headers["if-none-match"];
    send(
      reply,
      asset ?? index,
      typeof accept === "string" ? accept : undefined,
      typeof inm === "string" ? inm : undefined,
    );
    return true;
  };
}
