/**
 * The control-plane election's metrics (docs/metrics.md): whether this replica leads, the
 * epoch it sees, and how many terms it won and lost, read from the election at scrape time.
 * Every replica exposes them; `sum(novacron_control_plane_leader)` over the replicas is 1
 * when all is well.
 */
import { Gauge, type Registry } from "prom-client";
import type { LeadershipStatus } from "../cluster/leadership.js";

/** Registers the gauges; `status` is the election as this replica sees it now. */
export function registerControlPlaneMetrics(registry: Registry, status: () => LeadershipStatus): void {
  new Gauge({
    name: "novacron_control_plane_leader",
    help: "1 while this server replica is the control-plane leader (runs the controllers), else 0",
    registers: [registry],
    collect() {
      this.set(status().role === "leader" ? 1 : 0);
    },
  });
  new Gauge({
    name: "novacron_control_plane_epoch",
    help: "The leader lease's epoch (term) this replica last saw; it grows by one on every change of leader",
    registers: [registry],
    collect() {
      this.set(status().epoch);
    },
  });
  new Gauge({
    name: "novacron_control_plane_terms",
    help: "Leader terms this replica won (event=elected) and lost (event=deposed) since it started",
    labelNames: ["event"] as const,
    registers: [registry],
    collect() {
      const s = status();
      this.set({ event: "elected" }, s.elections);
      this.set({ event: "deposed" }, s.depositions);
    },
  });
}

/** Registers the count of live-only events this replica could not relay to the others (cluster/event-relay.ts). */
export function registerEventRelayMetrics(registry: Registry, dropped: () => number): void {
  new Gauge({
    name: "novacron_live_events_dropped",
    help: "Live-only events (progress, execution logs) this replica did not relay to the other replicas since it started: its queue was full or one exceeded a notification",
    registers: [registry],
    collect() {
      this.set(dropped());
    },
  });
}
