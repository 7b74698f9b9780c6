/**
 * The server's Prometheus metrics (prom-client; every one listed in docs/metrics.md): HTTP
 * requests by route pattern and status, VM and host counts by state read from the store
 * at scrape time so every replica reports the truth rather than its own counters, the
 * migrations (migration-metrics.ts), the certificates' expiry and the process's own.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { listHosts } from "../cluster/store/hosts.js";
import type { Store } from "../cluster/store/store.js";
import { countVmsByState } from "../cluster/store/vms.js";
import { type HeldCertificate, registerCertificateExpiry } from "../security/cert-metrics.js";
import { VM_STATES } from "../states/vm.js";
import { type MigrationObserver, registerMigrationMetrics } from "./migration-metrics.js";

/** The metrics a server exposes on /metrics. */
export interface ServerMetrics {
  registry: Registry;
  httpRequests: Counter<"method" | "route" | "status">;
  /** HA restarts by outcome (cluster/ha-restarter.ts). */
  haRestarts: Counter<"outcome">;
  httpDuration: Histogram<"method" | "route">;
  /** Hand to the migration orchestrator: observes each migration's end. */
  migrations: MigrationObserver;
}

/**
 * Creates the registry and its collectors. `certificates` lists the cluster CA's and the
 * server's certificates as they are at scrape time (the server's is renewed in place).
 */
export function createServerMetrics(
  store: Store,
  certificates: () => readonly HeldCertificate[] = () => [],
): ServerMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "novacron_server_" });
  registerCertificateExpiry(registry, certificates);
  const migrations = registerMigrationMetrics(registry, store);
  const httpRequests = new Counter({
    name: "novacron_http_requests_total",
    help: "HTTP requests served, by method, route pattern and status code",
    labelNames: ["method", "route", "status"] as const,
    registers: [registry],
  });
  const httpDuration = new Histogram({
    name: "novacron_http_request_duration_seconds",
    help: "HTTP request latency by method and route pattern",
    labelNames: ["method", "route"] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: [registry],
  });
  new Gauge({
    name: "novacron_vms",
    help: "VMs by lifecycle state",
    labelNames: ["state"] as const,
    registers: [registry],
    async collect() {
      const counts = await countVmsByState(store.read);
      for (const state of Object.keys(VM_STATES)) this.set({ state }, counts[state] ?? 0);
    },
  });
  new Gauge({
    name: "novacron_hosts",
    help: "Hosts by liveness and cordon",
    labelNames: ["liveness", "cordoned"] as const,
    registers: [registry],
    async collect() {
      const hosts = await listHosts(store.read);
      this.reset();
      for (const liveness of ["alive", "dead"]) {
        for (const cordoned of [true, false]) {
          this.set(
            { liveness, cordoned: String(cordoned) },
            hosts.filter((h) => h.liveness === liveness && h.cordoned === cordoned).length,
          );
        }
      }
    },
  });
  const haRestarts = new Counter({
    name: "novacron_ha_restarts_total",
    help: "HA steps taken for VMs whose host died: restarted (on another host), restarted-in-place (the host came back after self-fencing), no-host (no host could take it; retried)",
    labelNames: ["outcome"] as const,
    registers: [registry],
  });
  return { registry, httpRequests, httpDuration, migrations, haRestarts };
}
