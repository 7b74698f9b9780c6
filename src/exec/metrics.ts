/**
 * Prometheus metrics of the execution system: queue depth, DLQ size and executions by
 * state read from the database at scrape time (true for every replica), and this
 * process's claim latency, run times by step kind, retries and lease expiries.
 */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { countExecutionsByState } from "../cluster/store/executions.js";
import { countJobs } from "../cluster/store/executions-queue.js";
import type { Store } from "../cluster/store/store.js";
import { EXEC_STATES } from "../states/execution.js";
import type { PoolObserver } from "./pool.js";
import type { RunnerObserver } from "./runner.js";

/** Observers to hand to the pool and the runner. */
export interface ExecMetrics {
  pool: PoolObserver;
  runner: RunnerObserver;
}

/** Registers the execution metrics on `registry`. */
export function registerExecMetrics(registry: Registry, store: Store): ExecMetrics {
  new Gauge({
    name: "novacron_exec_queue_depth",
    help: "Jobs in the execution queue, by queue and job state",
    labelNames: ["queue", "state"] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const r of await countJobs(store.read)) this.set({ queue: r.queue, state: r.state }, r.n);
    },
  });
  new Gauge({
    name: "novacron_exec_dlq_size",
    help: "Jobs in the dead-letter queue",
    registers: [registry],
    async collect() {
      const rows = await countJobs(store.read);
      this.set(rows.filter((r) => r.state === "dead").reduce((n, r) => n + r.n, 0));
    },
  });
  new Gauge({
    name: "novacron_executions",
    help: "Executions by state",
    labelNames: ["state"] as const,
    registers: [registry],
    async collect() {
      const counts = await countExecutionsByState(store.read);
      for (const s of Object.keys(EXEC_STATES)) this.set({ state: s }, counts[s] ?? 0);
    },
  });
  const claimLatency = new Histogram({
    name: "novacron_exec_claim_latency_seconds",
    help: "Time from a job becoming runnable to a worker claiming it",
    labelNames: ["queue"] as const,
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 60, 300],
    registers: [registry],
  });
  const jobRun = new Histogram({
    name: "novacron_exec_job_run_seconds",
    help: "Job run time by queue and outcome",
    labelNames: ["queue", "outcome"] as const,
    buckets: [0.01, 0.1, 0.5, 1, 5, 30, 120, 600, 3600],
    registers: [registry],
  });
  const stepRun = new Histogram({
    name: "novacron_exec_step_run_seconds",
    help: "Step run time by kind and outcome",
    labelNames: ["kind", "outcome"] as const,
    buckets: [0.01, 0.1, 0.5, 1, 5, 30, 120, 600, 3600],
    registers: [registry],
  });
  const retries = new Counter({
    name: "novacron_exec_retries_total",
    help: "Failed attempts scheduled for retry, by queue",
    labelNames: ["queue"] as const,
    registers: [registry],
  });
  const dead = new Counter({
    name: "novacron_exec_dead_letters_total",
    help: "Jobs moved to the dead-letter queue by this process",
    labelNames: ["queue"] as const,
    registers: [registry],
  });
  const leaseExpiries = new Counter({
    name: "novacron_exec_lease_expiries_total",
    help: "Job leases that expired and were reaped (a worker died or stalled)",
    labelNames: ["queue"] as const,
    registers: [registry],
  });
  return {
    pool: {
      claimed: (job) => claimLatency.observe({ queue: job.queue }, job.waitedMs / 1000),
      finished: (job, outcome, ms) => {
        jobRun.observe({ queue: job.queue, outcome }, ms / 1000);
        if (outcome === "retry") retries.inc({ queue: job.queue });
        if (outcome === "dead") dead.inc({ queue: job.queue });
      },
      reaped: (jobs) => {
        for (const j of jobs) leaseExpiries.inc({ queue: j.queue });
      },
    },
    runner: { stepFinished: (kind, outcome, ms) => stepRun.observe({ kind, outcome }, ms / 1000) },
  };
}
