/**
 * The CLI's REST client: typed calls over TLS to the server whose CA was pinned at login
 * (no other CA is trusted), server errors turned into NovaErrors with the server's code.
 * With several replicas' URLs it moves to the next only when one cannot be connected to
 * (server-urls.ts), so that no request is sent twice.
 */

import { describeError, isNovaError, NovaError } from "../lib/errors.js";
import { readJsonReply } from "../lib/json-response.js";
import { traceHeaders } from "../lib/tracing.js";
import { type ClusterFetch, clusterFetch } from "../security/tls-client.js";
import type { CliConfig } from "./config.js";
import { needsCa, neverConnected, parseServerList } from "./server-urls.js";

/** Calls the NovaCron API. */
export class ApiClient {
  private readonly fetchTls: ClusterFetch | undefined;
  /** The replicas' URLs (one for a single server). */
  private readonly servers: string[];
  /** The one that answered last: the next request starts there. */
  private current = 0;

  constructor(private readonly config: CliConfig) {
    this.servers = parseServerList(config.server);
    if (needsCa(config.server)) {
      if (!config.ca) {
        throw new NovaError(
          "NOVA_CONFIG",
          `No CA is pinned for ${config.server}. Run novacron login --server ${config.server} (it shows the CA fingerprint to confirm), or give --ca-file / NOVACRON_CA_FILE.`,
        );
      }
      this.fetchTls = clusterFetch({ caPem: config.ca }, { role: "server" });
    }
  }

  /** GET. */
  get<T>(route: string): Promise<T> {
    return this.request<T>("GET", route);
  }

  /** POST with a JSON body. */
  post<T>(route: string, body?: unknown): Promise<T> {
    return this.request<T>("POST", route, body);
  }

  /** PATCH with a JSON body. */
  patch<T>(route: string, body: unknown): Promise<T> {
    return this.request<T>("PATCH", route, body);
  }

  /** PUT with a JSON body. */
  put<T>(route: string, body?: unknown): Promise<T> {
    return this.request<T>("PUT", route, body);
  }

  /** DELETE. */
  delete<T>(route: string): Promise<T> {
    return this.request<T>("DELETE", route);
  }

  /** Sends the request to the current replica, then to each next one it could not connect to. */
  private async send(method: string, route: string, body?: unknown): Promise<Response> {
    const n = this.servers.length;
    const missed: string[] = [];
    for (let i = 0; i < n; i++) {
      const index = (this.current + i) % n;
      const url = this.servers[index]!;
      try {
        const res = await (url.startsWith("https://") ? this.fetchTls! : fetch)(`${url}${route}`, {
          method,
          headers: traceHeaders({
            // No token only for logging in (POST /v1/session).
            ...(this.config.token ? { authorization: `Bearer ${this.config.token}` } : {}),
            ...(body === undefined ? {} : { "content-type": "application/json" }),
          }),
          body: body === undefined ? null : JSON.stringify(body),
          signal: AbortSignal.timeout(660_000),
        });
        this.current = index;
        return res;
      } catch (err) {
        if (n === 1)
          throw new NovaError(
            "NOVA_HOST_UNREACHABLE",
            `Cannot reach the NovaCron server at ${url}: ${describeTlsError(err)}`,
          );
        if (!neverConnected(err))
          throw new NovaError(
            "NOVA_HOST_UNREACHABLE",
            `The connection to the NovaCron server at ${url} failed during ${method} ${route}: ${describeTlsError(err)} It may have taken the request: check before repeating it (it is not sent to another replica).`,
          );
        missed.push(`${url}: ${describeTlsError(err)}`);
      }
    }
    throw new NovaError(
      "NOVA_HOST_UNREACHABLE",
      `Cannot reach any of the NovaCron server's ${n} replicas (--server): ${missed.join("; ")}`,
      { details: { servers: this.servers } },
    );
  }

  private async request<T>(method: string, route: string, body?: unknown): Promise<T> {
    const res = await this.send(method, route, body);
    try {
      return (await readJsonReply(res, {
        fallbackCode: "NOVA_INTERNAL",
        describe: (message) => (message.startsWith("HTTP ") ? `${message} from ${method} ${route}` : message),
      })) as T;
    } catch (err) {
      // A user's saved session ended (or was ended): say how to get a new one.
      if (
        this.config.user &&
        (isNovaError(err, "NOVA_SESSION_EXPIRED") || isNovaError(err, "NOVA_UNAUTHENTICATED"))
      )
        throw new NovaError(err.code, `${err.message} (novacron login --user ${this.config.user})`, {
          details: err.details,
        });
      throw err;
    }
  }
}

/** URL path segment for a resource id or name. */
export function seg(value: string): string {
  return encodeURIComponent(value);
}

/** A connection failure in words an operator can act on (TLS trust problems say what to do). */
function describeTlsError(err: unknown): string {
  // fetch says only "fetch failed"; the reason is in the cause chain.
  const parts: string[] = [];
  for (let e: unknown = err; e && parts.length < 4; e = (e as { cause?: unknown }).cause)
    parts.push(describeError(e));
  const text = parts.join(": ");
  if (/certificate|self[- ]signed|issuer|not the NovaCron server/i.test(text)) {
    return `${text}. The server's certificate is not from the CA pinned at login: if the server's CA was really replaced, run novacron login again and compare the fingerprint it shows with the server's.`;
  }
  return `${text}. Is it running?`;
}
