/**
 * What the hand-offs cost (docs/federation.md §10, "What a hand-off costs"): the acp/1
 * round trips this cluster made and answered, the sessions it dialed for them, and the
 * database transactions the hand-offs committed. Counters only; a caller that wants one
 * hand-off's cost reads them before and after it (bench/xcluster.ts does).
 */
import { Counter, type Registry } from "prom-client";
import type { AcpRequest } from "../../api/types/acp.js";

/** ACP's Prometheus counters. */
export interface AcpMetrics {
  /** acp/1 exchanges, by role (sent: this cluster asked and had an answer; answered) and request. */
  requests: Counter<"role" | "request">;
  /** acp/1 sessions this cluster dialed (a new session costs its TLS and hello round trips). */
  dials: Counter;
  /** Transactions the hand-offs committed, by side (source, destination). */
  commits: Counter<"side">;
}

/** A request's label: the delivered statement's kind (prepare, release, abort), or `status`. */
export function requestLabel(request: AcpRequest): string {
  return request.type === "status" ? "status" : request.statement.kind;
}

/** Registers ACP's counters. */
export function createAcpMetrics(registry: Registry): AcpMetrics {
  return {
    requests: new Counter({
      name: "novacron_acp_requests_total",
      help: "acp/1 round trips, by role (sent: asked here and answered, refusals included; answered: asked by a peer) and request (prepare, release, abort, status)",
      labelNames: ["role", "request"] as const,
      registers: [registry],
    }),
    dials: new Counter({
      name: "novacron_acp_sessions_dialed_total",
      help: "acp/1 sessions dialed to peers (a session is kept and reused until it fails)",
      registers: [registry],
    }),
    commits: new Counter({
      name: "novacron_acp_commits_total",
      help: "Database transactions committed by the hand-offs, by side (source, destination)",
      labelNames: ["side"] as const,
      registers: [registry],
    }),
  };
}
