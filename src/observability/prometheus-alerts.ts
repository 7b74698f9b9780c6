/**
 * The alerts firing for this cluster, read from the Prometheus that evaluates NovaCron's
 * rules (deploy/prometheus/alerts.yml) at `--prometheus-url`. The server evaluates no rule
 * itself: Prometheus already does, over history the server does not keep, and a second
 * evaluator could disagree with the one that pages people. This reads its
 * `GET /api/v1/alerts`, with a deadline and a byte cap, caches the answer for a few
 * seconds (every open console polls it), and turns it into the API's shape.
 *
 * Plain http is accepted only to a loopback address: the answer names what is broken in
 * the fleet, and a network path must not be able to read or forge it.
 */
import { Agent, fetch as undiciFetch } from "undici";
import type { Alert, AlertsResponse } from "../api/types/alerts.js";
import { NovaError } from "../lib/errors.js";
import { readBoundedText } from "../lib/json-response.js";

/** The most bytes of Prometheus's answer read (far above thousands of alerts). */
export const ALERTS_REPLY_LIMIT_BYTES = 4 * 1024 * 1024;
/** The most alerts passed on; the rest are counted, not listed. */
export const ALERTS_MAX = 1000;
const ANNOTATION_MAX_CHARS = 2000;

/** Where to read alerts from. */
export interface PrometheusAlertsOptions {
  /** Prometheus's base URL (http only on loopback); user:password in it is sent as basic auth. */
  url: string;
  /** A CA (PEM) to trust for an https Prometheus beyond the system's. */
  caPem?: string;
  /** @defaultValue 3000 */
  timeoutMs?: number;
  /** How long one answer serves every reader. @defaultValue 5000 */
  cacheMs?: number;
  now?: () => number;
}

const LOOPBACK = new Set(["localhost", "127.0.0.1", "[::1]", "::1"]);

/** The URL checked: http(s), no query, http only to loopback. NOVA_CONFIG names the flag. */
export function parsePrometheusUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new NovaError(
      "NOVA_CONFIG",
      `--prometheus-url ${JSON.stringify(raw)} is not a URL; give Prometheus's base URL, e.g. https://prometheus.example:9090.`,
    );
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    throw new NovaError("NOVA_CONFIG", `--prometheus-url must be http or https, not ${url.protocol}`);
  if (url.protocol === "http:" && !LOOPBACK.has(url.hostname) && !url.hostname.startsWith("127."))
    throw new NovaError(
      "NOVA_CONFIG",
      `--prometheus-url ${redact(url)} is plain http to a non-loopback address; serve Prometheus over https (--web.config.file) and give an https URL (with --prometheus-ca if its certificate has its own CA).`,
    );
  if (url.search || url.hash)
    throw new NovaError(
      "NOVA_CONFIG",
      "--prometheus-url takes Prometheus's base URL, without a query or fragment.",
    );
  return url;
}

/** The URL as shown to users: without credentials. */
function redact(url: URL): string {
  const u = new URL(url.href);
  u.username = "";
  u.password = "";
  return u.href.replace(/\/$/, "");
}

/** Reads and caches the alerts of one Prometheus. */
export class PrometheusAlerts {
  private readonly url: URL;
  /** Prometheus's URL without credentials (shown in answers, errors and the server's banner). */
  readonly source: string;
  private readonly dispatcher: Agent;
  private readonly timeoutMs: number;
  private readonly cacheMs: number;
  private readonly now: () => number;
  private cached: { at: number; value: Promise<AlertsResponse> } | undefined;

  constructor(options: PrometheusAlertsOptions) {
    this.url = parsePrometheusUrl(options.url);
    this.source = redact(this.url);
    this.timeoutMs = options.timeoutMs ?? 3000;
    this.cacheMs = options.cacheMs ?? 5000;
    this.now = options.now ?? Date.now;
    this.dispatcher = new Agent({
      connect: options.caPem ? { ca: options.caPem } : {},
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
    });
  }

  /** The alerts, from cache when fresh; NOVA_ALERTS_UNAVAILABLE when Prometheus cannot be read. */
  read(): Promise<AlertsResponse> {
    const now = this.now();
    if (this.cached && now - this.cached.at < this.cacheMs) return this.cached.value;
    const value = this.fetch();
    this.cached = { at: now, value };
    // A failure is not cached: the next reader asks again.
    value.catch(() => {
      if (this.cached?.value === value) this.cached = undefined;
    });
    return value;
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }

  private async fetch(): Promise<AlertsResponse> {
    const endpoint = new URL(
      "api/v1/alerts",
      this.url.href.endsWith("/") ? this.url.href : `${this.url.href}/`,
    );
    const headers: Record<string, string> = { accept: "application/json" };
    if (endpoint.username || endpoint.password) {
      headers.authorization = `Basic ${Buffer.from(`${decodeURIComponent(endpoint.username)}:${decodeURIComponent(endpoint.password)}`).toString("base64")}`;
      endpoint.username = "";
      endpoint.password = "";
    }
    let text: string;
    let status: number;
    try {
      const res = (await undiciFetch(endpoint, {
        headers,
        dispatcher: this.dispatcher,
        signal: AbortSignal.timeout(this.timeoutMs),
      })) as unknown as Response;
      status = res.status;
      text = await readBoundedText(res, {
        peer: `Prometheus at ${this.source}`,
        maxBytes: ALERTS_REPLY_LIMIT_BYTES,
      });
    } catch (err) {
      throw this.unavailable(describeFetchError(err));
    }
    if (status !== 200) throw this.unavailable(`it answered HTTP ${status}`);
    const alerts = parseAlerts(text);
    if (typeof alerts === "string") throw this.unavailable(alerts);
    return { configured: true, source: this.source, fetchedAt: new Date(this.now()).toISOString(), alerts };
  }

  private unavailable(why: string): NovaError {
    return new NovaError(
      "NOVA_ALERTS_UNAVAILABLE",
      `Could not read alerts from Prometheus at ${this.source}: ${why}. Check that Prometheus runs there and that the server's --prometheus-url (and --prometheus-ca) are right.`,
      { details: { source: this.source } },
    );
  }
}

function describeFetchError(err: unknown): string {
  if (err instanceof NovaError) return err.message;
  if (err instanceof Error) {
    if (err.name === "TimeoutError" || err.name === "AbortError") return "no answer in time";
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    if (cause?.code && cause.message && !cause.message.includes(cause.code))
      return `${cause.code} (${cause.message})`;
    return cause?.message ?? cause?.code ?? err.message;
  }
  return String(err);
}

const SEVERITY_RANK: Record<string, number> = { critical: 0, error: 1, warning: 2, info: 3 };

/**
 * Prometheus's `/api/v1/alerts` answer as the API's alerts (inactive ones dropped; firing
 * first, then by severity and name), or a string saying what is wrong with it.
 */
export function parseAlerts(text: string): Alert[] | string {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return "its answer is not JSON";
  }
  const body = json as { status?: unknown; data?: { alerts?: unknown } };
  if (body?.status !== "success" || !Array.isArray(body.data?.alerts))
    return "its answer is not a Prometheus alerts list (status success, data.alerts)";
  const out: Alert[] = [];
  for (const raw of body.data.alerts as unknown[]) {
    const a = raw as {
      labels?: unknown;
      annotations?: unknown;
      state?: unknown;
      activeAt?: unknown;
      value?: unknown;
    };
    if (a?.state !== "firing" && a?.state !== "pending") continue;
    const labels = stringRecord(a.labels);
    const annotations = stringRecord(a.annotations);
    const name = labels.alertname;
    if (!name) continue;
    out.push({
      name,
      state: a.state,
      ...(labels.severity ? { severity: labels.severity } : {}),
      ...(annotations.summary ? { summary: annotations.summary } : {}),
      ...(annotations.description ? { description: annotations.description } : {}),
      ...(annotations.runbook_url ? { runbook: annotations.runbook_url } : {}),
      labels,
      ...(typeof a.activeAt === "string" ? { activeAt: a.activeAt } : {}),
      ...(typeof a.value === "string" ? { value: a.value } : {}),
    });
  }
  out.sort(
    (x, y) =>
      Number(x.state !== "firing") - Number(y.state !== "firing") ||
      (SEVERITY_RANK[x.severity ?? ""] ?? 9) - (SEVERITY_RANK[y.severity ?? ""] ?? 9) ||
      x.name.localeCompare(y.name),
  );
  return out.slice(0, ALERTS_MAX);
}

function stringRecord(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!v || typeof v !== "object") return out;
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    if (typeof x === "string")
      out[k] = x.length > ANNOTATION_MAX_CHARS ? `${x.slice(0, ANNOTATION_MAX_CHARS)}…` : x;
  }
  return out;
}
