/** The CLI's REST client: typed calls, server errors turned into NovaErrors with the server's code. */

import { describeError, NovaError } from "../lib/errors.js";
import { readJsonReply } from "../lib/json-response.js";
import type { CliConfig } from "./config.js";

/** Calls the NovaCron API. */
export class ApiClient {
  constructor(private readonly config: CliConfig) {}

  /** GET. */
  get<T>(route: string): Promise<T> {
    return this.request<T>("GET", route);
  }

  /** POST with a JSON body. */
  post<T>(route: string, body?: unknown): Promise<T> {
    return this.request<T>("POST", route, body);
  }

  /** DELETE. */
  delete<T>(route: string): Promise<T> {
    return this.request<T>("DELETE", route);
  }

  private async request<T>(method: string, route: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`${this.config.server}${route}`, {
        method,
        headers: {
          authorization: `Bearer ${this.config.token}`,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        body: body === undefined ? null : JSON.stringify(body),
        signal: AbortSignal.timeout(660_000),
      });
    } catch (err) {
      throw new NovaError(
        "NOVA_HOST_UNREACHABLE",
        `Cannot reach the NovaCron server at ${this.config.server}: ${describeError(err)}. Is it running?`,
      );
    }
    const json = await readJsonReply(res, {
      fallbackCode: "NOVA_INTERNAL",
      describe: (message) => (message.startsWith("HTTP ") ? `${message} from ${method} ${route}` : message),
    });
    return json as T;
  }
}

/** URL path segment for a resource id or name. */
export function seg(value: string): string {
  return encodeURIComponent(value);
}
