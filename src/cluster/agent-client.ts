/**
 * The server's client for a host agent's API (`/agent/v1/...`, docs/agent-protocol.md).
 * Network failures become NOVA_HOST_UNREACHABLE (retryable); the agent's own errors keep
 * their code and message so the user sees the host's reason.
 */
import type {
  AgentBlob,
  AgentImageImportPost,
  AgentImagePullPost,
  AgentIncomingEndpoints,
  AgentIncomingPost,
  AgentOutgoingPost,
  AgentOutgoingStatus,
  AgentVmPut,
  ObservedVm,
} from "../api/types/agent.js";
import { describeError, NovaError } from "../lib/errors.js";
import { readJsonReply } from "../lib/json-response.js";

/** Where and how to reach one agent. */
export interface AgentTarget {
  name: string;
  agentUrl: string;
  agentToken: string;
}

/** Calls one agent. */
export class AgentClient {
  constructor(
    private readonly target: AgentTarget,
    private readonly timeoutMs = 15_000,
  ) {}

  /** Makes the VM exist in this power state (idempotent); returns what the agent now observes. */
  putVm(vmId: string, body: AgentVmPut): Promise<ObservedVm> {
    return this.call("PUT", `/agent/v1/vms/${vmId}`, body);
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

  /** Destination: after the transfer completed, resume the VM here. */
  finishIncoming(vmId: string, migrationId: string, generation: number): Promise<ObservedVm> {
    return this.call("POST", `/agent/v1/vms/${vmId}/incoming/finish`, { migrationId, generation }, 60_000);
  }

  /** Source: starts a step (disk mirror, memory, post-copy switch). */
  startOutgoing(vmId: string, body: AgentOutgoingPost): Promise<AgentOutgoingStatus> {
    return this.call("POST", `/agent/v1/vms/${vmId}/outgoing`, body, 60_000);
  }

  /** Source: the migration as QEMU reports it. */
  outgoingStatus(vmId: string, migrationId: string): Promise<AgentOutgoingStatus> {
    return this.call("GET", `/agent/v1/vms/${vmId}/outgoing?migrationId=${encodeURIComponent(migrationId)}`);
  }

  /** Source: stops the transfer; the VM keeps (or resumes) running here. `targetGone` allows resuming after a completed transfer. */
  cancelOutgoing(vmId: string, migrationId: string, targetGone: boolean): Promise<AgentOutgoingStatus> {
    return this.call("POST", `/agent/v1/vms/${vmId}/outgoing/cancel`, { migrationId, targetGone }, 60_000);
  }

  /** Source: the VM runs elsewhere now; stop this QEMU and remove its disk. */
  releaseOutgoing(vmId: string): Promise<{ released: boolean }> {
    return this.call("POST", `/agent/v1/vms/${vmId}/outgoing/release`, {}, 60_000);
  }

  /** A one-time ticket to download a blob from this host. */
  blobTicket(digest: string): Promise<{ ticket: string }> {
    return this.call("POST", `/agent/v1/images/${encodeURIComponent(digest)}/ticket`, {});
  }

  /** Has this host fetch a blob from another host, verified by digest. */
  pullBlob(body: AgentImagePullPost): Promise<AgentBlob> {
    return this.call("POST", "/agent/v1/images/pull", body, 1_800_000);
  }

  /** The agent's URL, for building blob download links. */
  get url(): string {
    return this.target.agentUrl;
  }

  private async call<T>(
    method: string,
    path: string,
    body?: unknown,
    timeoutMs = this.timeoutMs,
  ): Promise<T> {
    const url = `${this.target.agentUrl}${path}`;
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers: {
          authorization: `Bearer ${this.target.agentToken}`,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
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
