/**
 * The CLI's `--server` (and NOVACRON_SERVER, and what login saves): one URL, or the URLs of
 * the replicas of one control plane separated by commas (docs/operations.md "Running
 * replicas"). A request goes to the replica that answered last, else the first; the next
 * is tried only when one could not be connected to at all. A request that may have reached
 * a replica is never sent to another: a create or a migration must not happen twice.
 */
import { parseServerUrlList } from "../lib/server-url-list.js";

/** The URLs in `text`, in order; NOVA_CONFIG naming one that is not an http(s) URL. */
export function parseServerList(text: string): string[] {
  return parseServerUrlList(text, { allowHttp: true });
}

/** `text` as the one spelling the config file keeps (so that a saved CA matches it again). */
export function normalizeServerList(text: string): string {
  return parseServerList(text).join(",");
}

/** Whether `servers` names an https URL, for which a pinned CA is needed. */
export function needsCa(servers: string): boolean {
  return parseServerList(servers).some((u) => u.startsWith("https://"));
}

/**
 * Whether the CA pinned at login for `saved` holds for `given`: every URL given is one that
 * was logged in to (one replica of a saved list, or the list in another order).
 */
export function pinnedFor(given: string, saved: string): boolean {
  let known: Set<string>;
  try {
    known = new Set(parseServerList(saved));
  } catch {
    return false;
  }
  return parseServerList(given).every((u) => known.has(u));
}

/**
 * Connection errors that happen before a request's first byte is sent: nothing refused,
 * no route, no such name, the connect timed out, or the TLS handshake failed (the token
 * is sent only after it succeeds).
 */
const NOT_CONNECTED_CODES = new Set([
  "ECONNREFUSED",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EHOSTDOWN",
  "ENOTFOUND",
  "EAI_AGAIN",
  "UND_ERR_CONNECT_TIMEOUT",
]);

/** Whether `err` (a failed fetch) says the request never left: another replica may take it. */
export function neverConnected(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && (NOT_CONNECTED_CODES.has(code) || code.startsWith("ERR_TLS_")))
      return true;
    if (typeof code === "string" && /CERT|SIGNATURE|ISSUER/.test(code)) return true;
    // clusterFetch's own identity check (security/tls-client.ts) fails the handshake; a
    // peer that is not a TLS server hangs up during it.
    if (
      e instanceof Error &&
      /^the peer is not the NovaCron server|disconnected before secure TLS connection was established/.test(
        e.message,
      )
    )
      return true;
  }
  return false;
}
