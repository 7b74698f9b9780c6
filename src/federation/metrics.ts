/** The federation's Prometheus metrics (docs/federation.md §7). */
import { Counter, Gauge, type Registry } from "prom-client";

/** Counters the links and the listener feed. */
export interface FederationMetrics {
  records: Counter<"outcome">;
  violations: Counter<"kind">;
  bytes: Counter<"direction">;
  peers: Gauge<"state">;
  lag: Gauge<"peer">;
  contactAge: Gauge<"peer">;
}

/** Registers the federation metrics; `collect` refreshes the gauges at scrape time. */
export function createFederationMetrics(
  registry: Registry,
  collect: (m: FederationMetrics) => Promise<void>,
): FederationMetrics {
  const m = {
    records: new Counter({
      name: "novacron_federation_records_received_total",
      help: "ASS records received from peers, by outcome (accepted, duplicate, stale, ignored, too_large, conflict)",
      labelNames: ["outcome"] as const,
      registers: [registry],
    }),
    violations: new Counter({
      name: "novacron_federation_violations_total",
      help: "Proven peer misbehaviour, by kind (equivocation, bad-signature, replay, not-owner)",
      labelNames: ["kind"] as const,
      registers: [registry],
    }),
    bytes: new Counter({
      name: "novacron_federation_sync_bytes_total",
      help: "ASS message bytes (JSON), by direction (received: batches pulled; sent: batches served)",
      labelNames: ["direction"] as const,
      registers: [registry],
    }),
  } as Omit<FederationMetrics, "peers" | "lag" | "contactAge">;
  let full: FederationMetrics;
  const refresh = async (): Promise<void> => collect(full);
  const peers = new Gauge({
    name: "novacron_federation_peers",
    help: "Peer clusters by state (active, quarantined)",
    labelNames: ["state"] as const,
    registers: [registry],
    collect: refresh,
  });
  const lag = new Gauge({
    name: "novacron_federation_peer_lag_records",
    help: "Writes of a peer not yet held here, as of the last contact",
    labelNames: ["peer"] as const,
    registers: [registry],
  });
  const contactAge = new Gauge({
    name: "novacron_federation_peer_last_contact_age_seconds",
    help: "Seconds since the last successful exchange with a peer (-1: never)",
    labelNames: ["peer"] as const,
    registers: [registry],
  });
  full = { ...m, peers, lag, contactAge };
  return full;
}
