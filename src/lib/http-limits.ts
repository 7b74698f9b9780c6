/**
 * Time and connection bounds of an HTTP(S) server, shared by the server's API and the
 * agent's. Node's own defaults let a client hold a connection for minutes without
 * finishing a request (requestTimeout 300 s, and Fastify's keep-alive 72 s); these cut a
 * slow or silent client off within seconds:
 *
 * - `headersTimeoutMs`: from the connection's first byte of a request (or the connection
 *   itself, for a client that sends nothing) until the request's headers are complete;
 * - `requestTimeoutMs`: until the whole request, body included, is received (bodies are at
 *   most 1 MiB, so 30 s is 35 KB/s at worst);
 * - `keepAliveTimeoutMs`: an idle connection between requests;
 * - `maxConnections`: connections beyond it are closed as they arrive;
 * - `maxConnectionsPerAddress`: the same per client address, so that one peer cannot take
 *   them all (counted from the TCP accept, before any TLS handshake).
 *
 * Expiry is checked every `checkIntervalMs` (Node's default is 30 s, which would add up to
 * 30 s to every bound). Nothing bounds the time the server takes to answer a complete
 * request: some (an image import, an execution waited on) take minutes.
 */
import type { Server } from "node:http";
import type { Socket } from "node:net";

/** The bounds, all in milliseconds except maxConnections. */
export interface HttpServerLimits {
  /** @defaultValue 10000 */
  headersTimeoutMs: number;
  /** @defaultValue 30000 */
  requestTimeoutMs: number;
  /** @defaultValue 10000 */
  keepAliveTimeoutMs: number;
  /** @defaultValue 1024 */
  maxConnections: number;
  /** @defaultValue 128 */
  maxConnectionsPerAddress: number;
  /** @defaultValue 1000 */
  checkIntervalMs: number;
}

/** The defaults (see the header). */
export const HTTP_SERVER_LIMITS = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 10_000,
  maxConnections: 1024,
  maxConnectionsPerAddress: 128,
  checkIntervalMs: 1000,
} as const satisfies HttpServerLimits;

/**
 * Applies the bounds to a created, not yet listening, server (Fastify's `app.server`). The
 * expiry checker starts on 'listening' and reads `connectionsCheckingInterval` then.
 */
export function applyHttpServerLimits(server: Server, limits: Partial<HttpServerLimits> = {}): void {
  const l = { ...HTTP_SERVER_LIMITS, ...limits };
  // Node requires headersTimeout <= requestTimeout.
  server.requestTimeout = l.requestTimeoutMs;
  server.headersTimeout = Math.min(l.headersTimeoutMs, l.requestTimeoutMs);
  server.keepAliveTimeout = l.keepAliveTimeoutMs;
  server.maxConnections = l.maxConnections;
  (server as Server & { connectionsCheckingInterval: number }).connectionsCheckingInterval =
    l.checkIntervalMs;
  const perAddress = new Map<string, number>();
  server.on("connection", (socket: Socket) => {
    const address = socket.remoteAddress ?? "";
    const n = (perAddress.get(address) ?? 0) + 1;
    if (n > l.maxConnectionsPerAddress) {
      socket.destroy();
      return;
    }
    perAddress.set(address, n);
    socket.once("close", () => {
      const left = (perAddress.get(address) ?? 1) - 1;
      if (left <= 0) perAddress.delete(address);
      else perAddress.set(address, left);
    });
  });
}

/**
 * How long a TLS handshake may take on the HTTPS servers (API and agent API): a client
 * that connects and never completes one is dropped after this, before any HTTP timeout
 * could apply.
 */
export const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;
