/**
 * The agent's link to its server: registers with the join token (once; the host
 * credential is kept 0600 in the data dir), then heartbeats every interval and at once
 * after any change. Survives server restarts (keeps retrying, logs once per outage) and
 * re-registers when the server no longer knows the credential.
 */
import { readFile, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "pino";
import type { AgentHeartbeatPost, AgentRegisterPost, AgentRegisterResponse } from "../api/types/agent.js";
import { ERROR_CODES, type ErrorCode } from "../lib/error-codes.js";
import { describeError, NovaError } from "../lib/errors.js";
import { WakeableLoop } from "../lib/wakeable-loop.js";

interface Credentials {
  serverUrl: string;
  hostId: string;
  hostToken: string;
}

/** Link options. */
export interface ServerLinkOptions {
  serverUrl: string;
  joinToken: string;
  dataDir: string;
  heartbeatIntervalMs: number;
  registration: () => Promise<AgentRegisterPost>;
  heartbeat: () => Promise<Omit<AgentHeartbeatPost, "agentUrl">>;
  agentUrl: string;
  log: Logger;
}

/** Registration and heartbeats. */
export class ServerLink {
  private creds: Credentials | undefined;
  private readonly heartbeats: WakeableLoop;
  private stopped = false;
  private outage = false;
  private readonly credsPath: string;

  constructor(private readonly o: ServerLinkOptions) {
    this.credsPath = path.join(o.dataDir, "agent-credentials.json");
    this.heartbeats = new WakeableLoop({
      pass: () => this.sendHeartbeat(),
      intervalMs: o.heartbeatIntervalMs,
      // sendHeartbeat handles its own failures (logged once per outage).
      onError: (err) => o.log.warn({ err: describeError(err) }, "heartbeat failed"),
    });
  }

  /** The host credential, once registered. */
  get credential(): string | undefined {
    return this.creds?.hostToken;
  }

  /** The host id, once registered. */
  get hostId(): string | undefined {
    return this.creds?.hostId;
  }

  /** Loads saved credentials or registers; then starts heartbeating. Retries until it works. */
  async start(signal?: AbortSignal): Promise<void> {
    this.creds = await this.load();
    if (!this.creds) await this.registerWithRetry(signal);
    this.beat();
  }

  /**
   * Sends a heartbeat now (coalesced with one in flight), then every interval. A change
   * reported while start() is still registering already starts the heartbeats.
   */
  beat(): void {
    if (this.stopped) return;
    if (this.heartbeats.running) this.heartbeats.wake();
    else this.heartbeats.start();
  }

  /** Stops heartbeating. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.heartbeats.stop();
  }

  private async sendHeartbeat(): Promise<void> {
    try {
      if (!this.creds) await this.register();
      const body: AgentHeartbeatPost = { agentUrl: this.o.agentUrl, ...(await this.o.heartbeat()) };
      const res = await this.post("/v1/agent/heartbeat", body, this.creds!.hostToken);
      if (res.status === 401) {
        this.o.log.warn("server does not know this host's credential; registering again");
        this.creds = undefined;
        await this.register();
        // Beat again right after this pass, with the new credential.
        this.heartbeats.wake();
        return;
      }
      if (!res.ok) throw await refusal(res, "heartbeat refused");
      if (this.outage) this.o.log.info("server reachable again");
      this.outage = false;
    } catch (err) {
      if (!this.outage) this.o.log.warn({ err: describeError(err) }, "heartbeat failed; will keep trying");
      this.outage = true;
    }
  }

  private async registerWithRetry(signal?: AbortSignal): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      signal?.throwIfAborted();
      try {
        await this.register();
        return;
      } catch (err) {
        // The server refusing this agent (bad join token, unsupported QEMU, …) is final;
        // an unreachable or failing server is retried.
        if (err instanceof NovaError && !err.retryable) throw err;
        if (attempt === 1)
          this.o.log.warn({ err: describeError(err) }, "cannot reach the server to register; retrying");
        await new Promise((r) => setTimeout(r, Math.min(5000, 250 * attempt)));
      }
    }
  }

  private async register(): Promise<void> {
    const res = await this.post("/v1/agent/register", await this.o.registration(), this.o.joinToken);
    if (res.status === 401 || res.status === 403) {
      throw new NovaError(
        "NOVA_UNAUTHENTICATED",
        `The server at ${this.o.serverUrl} refused the join token (${res.status}). Use the token from the server's join.token file.`,
      );
    }
    if (!res.ok) throw await refusal(res, "registration refused");
    const reply = (await res.json()) as AgentRegisterResponse;
    this.creds = { serverUrl: this.o.serverUrl, hostId: reply.hostId, hostToken: reply.hostToken };
    await writeFile(`${this.credsPath}.tmp`, JSON.stringify(this.creds), { mode: 0o600 });
    await rename(`${this.credsPath}.tmp`, this.credsPath);
    this.o.log.info({ hostId: reply.hostId }, "registered with server");
  }

  private post(route: string, body: unknown, token: string): Promise<Response> {
    return fetch(`${this.o.serverUrl}${route}`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(10_000),
    });
  }

  private async load(): Promise<Credentials | undefined> {
    try {
      const creds = JSON.parse(await readFile(this.credsPath, "utf8")) as Credentials;
      // Credentials belong to one server; pointing the agent elsewhere means joining anew.
      return creds.serverUrl === this.o.serverUrl ? creds : undefined;
    } catch {
      return undefined;
    }
  }
}

/**
 * The error for a refused call: the server's own NovaError (code and message) for a 4xx
 * with a NovaCron error body, so a final refusal such as NOVA_QEMU_UNSUPPORTED reaches the
 * user as the server said it; a plain Error (retried) otherwise.
 */
async function refusal(res: Response, what: string): Promise<Error> {
  const text = await res.text();
  if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) {
    try {
      const body = JSON.parse(text) as { error?: { code?: string; message?: string; details?: unknown } };
      const code = body.error?.code;
      if (code && Object.hasOwn(ERROR_CODES, code) && typeof body.error?.message === "string") {
        const details = body.error.details;
        return new NovaError(code as ErrorCode, `The server refused this agent: ${body.error.message}`, {
          details:
            typeof details === "object" && details !== null ? (details as Record<string, unknown>) : {},
        });
      }
    } catch {
      // not JSON: fall through
    }
  }
  return new Error(`${what}: HTTP ${res.status} ${text}`);
}
