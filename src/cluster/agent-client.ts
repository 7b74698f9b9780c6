/**
 * The server's client for a host agent's API (`/agent/v1/...`, docs/agent-protocol.md),
 * over mutual TLS: the server presents its certificate and accepts only the host's own
 * (AgentConnector). Network failures become NOVA_HOST_UNREACHABLE (retryable); the
 * agent's own errors keep their code and message so the user sees the host's reason.
 */

import type { Agent } from "undici";
import type {
  AgentBlob,
  AgentCopyState,
  AgentImageImportPost,
  AgentImageOffer,
  AgentImageOfferPost,
  AgentImagePullPost,
  AgentImagePullStart,
  AgentImagePullStatus,
  AgentIncomingEndpoints,
  AgentIncomingPost,
  AgentOutgoingPost,
  AgentOutgoingStatus,
  AgentVmFenceReply,
  AgentVmPut,
  FenceToken,
  ObservedVm,
} from "../api/types/agent.js";
import { describeError, NovaError } from "../lib/errors.js";
import { readJsonReply } from "../lib/json-response.js";
import { hasActiveSpan, inSpan, traceHeaders } from "../lib/tracing.js";
import { type ClusterFetch, type ClusterTls, clusterAgent, fetchVia } from "../security/tls-client.js";

/** Where to reach one agent. */
export interface AgentTarget {
  id: string;
  name: string;
  agentUrl: string;
}

/**
 * Makes clients for agents: one TLS connection pool per host, each accepting only that
 * host's certificate. Without TLS material (in-process tests of the API alone) it calls
 * plain http:// agent URLs.
 */
export class AgentConnector {
  private readonly pools = new Map<string, { agent: Agent; fetch: ClusterFetch }>();

  /** @param tls the server's TLS identity, read at each new pool (it is renewed in place). */
  constructor(private readonly tls: (() => ClusterTls) | null) {}

  /** A client for `host`. */
  client(host: AgentTarget, timeoutMs?: number): AgentClient {
    return new AgentClient(host, this.fetchFor(host), timeoutMs);
  }

  /** The fetch to use for calls to `host`'s agent. */
  fetchFor(host: AgentTarget): ClusterFetch {
    if (!this.tls) return withTraceHeaders(fetch);
    let pool = this.pools.get(host.id);
    if (!pool) {
      const agent = clusterAgent(this.tls(), { role: "host", hostId: host.id });
      pool = { agent, fetch: withTraceHeaders(fetchVia(agent)) };
      this.pools.set(host.id, pool);
    }
    return pool.fetch;
  }

  /** Drops the pools (after the server's certificate was renewed); calls in flight finish. */
  reset(): void {
    for (const { agent } of this.pools.values()) void agent.close().catch(() => {});
    this.pools.clear();
  }
}

/** Calls one agent. */
export class AgentClient {
  constructor(
    private readonly target: AgentTarget,
    private readonly fetchAgent: ClusterFetch,
    private readonly timeoutMs = 15_000,
  ) {}

  /** Makes the VM exist in this power state (idempotent); returns what the agent now observes. */
  putVm(vmId: string, body: AgentVmPut): Promise<ObservedVm> {
    return this.call("PUT", `/agent/v1/vms/${vmId}`, body);
  }

  /**
   * Hands the agent a newer fencing token for the VM (held or not) without changing its
   * power state; returns the token it holds afterwards (an older one leaves it as is).
   */
  fenceVm(vmId: string, fence: FenceToken): Promise<AgentVmFenceReply> {
    return this.call("PUT", `/agent/v1/vms/${vmId}/fence`, fence);
  }

  /** Stops (hard after the grace period) and removes the VM and its disk (idempotent). */
  deleteVm(vmId: string): Promise<{ deleted: boolean }> {
    return this.call("DELETE", `/agent/v1/vms/${vmId}`);
  }

  /** The last `lines` lines of the VM's serial console. */
  consoleTail(vmId: string, lines: number): Promise<{ lines: string[] }> {
    return this.call("GET", `/agent/v1/vms/${vmId}/console?lines=${lines}`);
  }

  /** Imports a file on the host into its image store. */
  importBlob(body: AgentImageImportPost, timeoutMs = 600_000): Promise<AgentBlob> {
    return this.call("POST", "/agent/v1/images/import", body, timeoutMs);
  }

  /** Destination: starts a QEMU waiting for the VM; returns where the source sends it. */
  prepareIncoming(vmId: string, body: AgentIncomingPost): Promise<AgentIncomingEndpoints> {
    return this.call("POST", `/agent/v1/vms/${vmId}/incoming`, body, 120_000);
  }

  /** Destination: after the transfer completed, resume the VM here (with its current token). */
  finishIncoming(
    vmId: string,
    migrationId: string,
    generation: number,
    fence: FenceToken,
  ): Promise<ObservedVm> {
    return this.call(
      "POST",
      `/agent/v1/vms/${vmId}/incoming/finish`,
      { migrationId, generation, fence },
      60_000,
    );
  }

  /** Source: starts a step (disk mirror, memory, post-copy switch). */
  startOutgoing(vmId: string, body: AgentOutgoingPost): Promise<AgentOutgoingStatus> {
    return this.call("POST", `/agent/v1/vms/${vmId}/outgoing`, body, 60_000);
  }

  /** Source: the migration as QEMU reports it. */
  outgoingStatus(vmId: string, migrationId: string): Promise<AgentOutgoingStatus> {
    return this.call("GET", `/agent/v1/vms/${vmId}/outgoing?migrationId=${encodeURIComponent(migrationId)}`);
  }

  /**
   * Source: stops the transfer; the VM keeps (or resumes) running here, with its current
   * token. `targetGone` allows resuming after a completed transfer.
   */
  cancelOutgoing(
    vmId: string,
    migrationId: string,
    targetGone: boolean,
    fence: FenceToken,
  ): Promise<AgentOutgoingStatus> {
    return this.call(
      "POST",
      `/agent/v1/vms/${vmId}/outgoing/cancel`,
      { migrationId, targetGone, fence },
      60_000,
    );
  }

  /** Source: the VM runs elsewhere now; stop this QEMU and remove its disk. */
  releaseOutgoing(vmId: string): Promise<{ released: boolean }> {
    return this.call("POST", `/agent/v1/vms/${vmId}/outgoing/release`, {}, 60_000);
  }

  /**
   * What this host holds of the VM, read from its QEMU: running, paused (the whole VM),
   * incomplete (a destination not yet whole) or gone (no QEMU for it: not an error).
   */
  copyState(vmId: string): Promise<AgentCopyState> {
    return this.call("GET", `/agent/v1/vms/${vmId}/copy`);
  }

  /** A one-time ticket to download a blob from this host. */
  blobTicket(digest: string): Promise<{ ticket: string; sizeBytes?: number }> {
    return this.call("POST", `/agent/v1/images/${encodeURIComponent(digest)}/ticket`, {});
  }

  /** Has this host fetch a blob from another host, verified by digest. */
  pullBlob(body: AgentImagePullPost): Promise<AgentBlob> {
    return this.call("POST", "/agent/v1/images/pull", body, 1_800_000);
  }

  /** Offers blobs of this host's store to another cluster's hosts (an image copy's source). */
  offerImage(body: AgentImageOfferPost): Promise<AgentImageOffer> {
    return this.call("POST", "/agent/v1/image-offers", body);
  }

  /** Ends an offer (idempotent). */
  withdrawImageOffer(id: string): Promise<{ withdrawn: boolean }> {
    return this.call("DELETE", `/agent/v1/image-offers/${id}`);
  }

  /** Starts, or reports, this host's pull of another cluster's offer (returns at once). */
  pullImage(body: AgentImagePullStart): Promise<AgentImagePullStatus> {
    return this.call("POST", "/agent/v1/image-pulls", body);
  }

  /** The agent's URL, for building blob download links. */
  get url(): string {
    return this.target.agentUrl;
  }

  private call<T>(method: string, path: string, body?: unknown, timeoutMs = this.timeoutMs): Promise<T> {
    // Within a trace (a migration's run, an execution's step) each call is a span the
    // agent's own spans hang under; outside one (the reconciler, polls) it is not traced.
    if (!hasActiveSpan()) return this.send(method, path, body, timeoutMs);
    return inSpan(
      `agent ${method} ${routeOf(path)}`,
      { "server.address": this.target.name, "http.request.method": method, "url.path": path },
      () => this.send(method, path, body, timeoutMs),
    );
  }

  private async send<T>(method: string, path: string, body: unknown, timeoutMs: number): Promise<T> {
    const url = `${this.target.agentUrl}${path}`;
    let res: Response;
    try {
      res = await this.fetchAgent(url, {
        method,
        headers: body === undefined ? {} : { "content-type": "application/json" },
        body: body === undefined ? null : JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      throw new NovaError(
        "NOVA_HOST_UNREACHABLE",
        `Failed reaching host ${this.target.name} at ${this.target.agentUrl}: ${describeError(err)}`,
        {
          details: { host: this.target.name },
          cause: err,
        },
      );
    }
    const json = await readJsonReply(res, {
      fallbackCode: "NOVA_AGENT_ERROR",
      peer: `host ${this.target.name}`,
      describe: (message) => `Host ${this.target.name}: ${message}`,
      details: { host: this.target.name },
    });
    if (json === undefined)
      throw new NovaError(
        "NOVA_AGENT_ERROR",
        `Host ${this.target.name} sent a non-JSON reply to ${method} ${path}`,
      );
    return json as T;
  }
}

/**
 * Every call to an agent made inside a trace carries it (`traceparent`), whoever makes
 * it: this client or a step that fetches an agent route itself.
 */
function withTraceHeaders(f: ClusterFetch): ClusterFetch {
  return (url, init) => {
    const headers = new Headers(init?.headers);
    for (const [k, v] of Object.entries(traceHeaders())) headers.set(k, v);
    return f(url, { ...init, headers });
  };
}

/** A path with its ids and digests replaced, for a span name of bounded variety. */
export function routeOf(path: string): string {
  return path
    .split("?")[0]!
    .split("/")
    .map((seg) => (/^[0-9a-f-]{16,}$/i.test(seg) || /^sha256:/.test(seg) ? ":id" : seg))
    .join("/");
}
