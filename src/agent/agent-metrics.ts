/**
 * The agent's Prometheus metrics (docs/metrics.md), served on `/metrics` of its mutual-TLS
 * API to the server and to scraper certificates: its VMs by state and each VM's state
 * (one series per VM it holds: bounded by what the host runs), DWCP's figures for the
 * migrations it sends (dwcp/metrics.ts, fed by the tuner of each session) and the image
 * blobs it pulls from other clusters, the fencing
 * check's refusals, its own and the CA's certificate expiry, and the process's own metrics under `novacron_agent_`.
 */
import { Counter, collectDefaultMetrics, Gauge, Registry } from "prom-client";
import type { ObservedVm } from "../api/types/agent.js";
import { DwcpMetrics } from "../dwcp/metrics.js";
import { type HeldCertificate, registerCertificateExpiry } from "../security/cert-metrics.js";

/** The states a VM is observed in on an agent. */
const OBSERVED_STATES: readonly ObservedVm["state"][] = [
  "starting",
  "running",
  "stopping",
  "stopped",
  "failed",
];

/** The agent's registry and the metric sets its parts feed. */
export interface AgentMetrics {
  registry: Registry;
  /** DWCP's gauges and counters; the migration source's tuners publish into it. */
  dwcp: DwcpMetrics;
  /** Counts a request the fencing check refused (fence-store.ts), by refusal kind. */
  fenceRefused(refusal: string): void;
  /** Counts an image blob pulled from another cluster's host over DWCP (dwcp/image-pull.ts). */
  imageBlobPulled(bytes: { logicalBytes: number; wireBytes: number }): void;
}

/** What the agent's metrics read at scrape time. */
export interface AgentMetricsSources {
  /** The VMs as the agent holds them now (VmManager.list). */
  vms: () => readonly ObservedVm[];
  /** The host's certificate and the cluster CA, as they are now (renewal swaps them). */
  certificates: () => readonly HeldCertificate[];
  /** Whether to collect the process's default metrics (CPU, memory, event loop). @defaultValue true */
  processMetrics?: boolean;
}

/** Creates the agent's registry with every collector on it. */
export function createAgentMetrics(src: AgentMetricsSources): AgentMetrics {
  const registry = new Registry();
  if (src.processMetrics !== false) collectDefaultMetrics({ register: registry, prefix: "novacron_agent_" });
  registerCertificateExpiry(registry, src.certificates);
  new Gauge({
    name: "novacron_agent_vms",
    help: "VMs this agent holds, by observed state (starting, running, stopping, stopped, failed)",
    labelNames: ["state"] as const,
    registers: [registry],
    collect() {
      const counts = new Map<string, number>(OBSERVED_STATES.map((s) => [s, 0]));
      for (const vm of src.vms()) counts.set(vm.state, (counts.get(vm.state) ?? 0) + 1);
      for (const [state, n] of counts) this.set({ state }, n);
    },
  });
  new Gauge({
    name: "novacron_agent_vm_state",
    help: "1 for each VM this agent holds, labelled with its id and observed state (one series per VM)",
    labelNames: ["vm_id", "state"] as const,
    registers: [registry],
    collect() {
      // Reset first: a VM that left this host, or changed state, leaves no stale series.
      this.reset();
      for (const vm of src.vms()) this.set({ vm_id: vm.id, state: vm.state }, 1);
    },
  });
  const refusals = new Counter({
    name: "novacron_agent_fence_refusals_total",
    help: "Requests to start or resume a VM that the fencing check refused, by refusal (older, conflict, other-owner, unknown-cluster)",
    labelNames: ["refusal"] as const,
    registers: [registry],
  });
  const pulledLogical = new Counter({
    name: "novacron_agent_image_pull_logical_bytes_total",
    help: "Bytes of image blobs this agent pulled from another cluster's host over DWCP and stored",
    registers: [registry],
  });
  const pulledWire = new Counter({
    name: "novacron_agent_image_pull_wire_bytes_total",
    help: "HDE bytes that crossed for those blobs (references to this host's page cache cost little)",
    registers: [registry],
  });
  return {
    registry,
    dwcp: new DwcpMetrics(registry),
    fenceRefused: (refusal) => refusals.inc({ refusal }),
    imageBlobPulled: (b) => {
      pulledLogical.inc(b.logicalBytes);
      pulledWire.inc(b.wireBytes);
    },
  };
}
