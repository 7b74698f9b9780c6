/**
 * The CLI's REST client: typed calls over TLS to the server whose CA was pinned at login
 * (no other CA is trusted), server errors turned into NovaErrors with the server's code.
 */

import { describeError, isNovaError, NovaError } from "../lib/errors.js";
import { readJsonReply } from "../lib/json-response.js";
import { traceHeaders } from "../lib/tracing.js";
import { type ClusterFetch, clusterFetch } from "../security/tls-client.js";
import type { CliConfig } from "./config.js";

/** Calls the NovaCron API. */
export class ApiClient {
  private readonly fetchServer: ClusterFetch;

  constructor(private readonly config: CliConfig) {
    if (config.server.startsWith("https://")) {
      if (!config.ca) {
        throw new NovaError(
          "NOVA_CONFIG",
          `No CA is pinned for ${config.server}. Run novacron login --server ${config.server} (it shows the CA fingerprint to confirm), or give --ca-file / NOVACRON_CA_FILE.`,
        );
      }
      this.fetchServer = clusterFetch({ caPem: config.ca }, { role: "server" });
    } else {
      this.fetchServer = fetch;
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

  /** DELETE. */
  delete<T>(route: string): Promise<T> {
    return this.request<T>("DELETE", route);
  }

  private async request<T>(method: string, route: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await this.fetchServer(`${this.config.server}${route}`, {
        method,
        headers: traceHeaders({
          // No token only for logging in (POST /v1/session).
          ...(this.config.token ? { authorization: `Bearer ${this.config.token}` } : {}),
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        }),
        body: body === undefined ? null : JSON.stringify(body),
        signal: AbortSignal.timeout(660_000),
      });
    } catch (err) {
      throw new NovaError(
        "NOVA_HOST_UNREACHABLE",
        `Cannot reach the NovaCron server at ${this.config.server}: ${describeTlsError(err)}`,
      );
    }
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
