/**
 * Runs live migrations, step by step, recording each step durably so that any failure or
 * restart ends in one of two outcomes: the VM runs on the target, or it still runs on the
 * source. Never both, never neither.
 *
 *   queued ──limits allow──▶ preparing ──target QEMU waiting──▶ transferring
 *     (disk mirror until in sync, then memory pre-copy until QEMU completes; the source is
 *      then paused) ──▶ switching-over ──target runs it──▶ completed
 *   any failure, cancel or timeout before switching-over ──▶ failed / cancelled:
 *     target QEMU killed and its disk removed, source resumed if paused.
 *   switching-over is re-runnable: after a server restart it is finished if the target
 *     can take the VM, else rolled back to the source.
 *
 * Three parts: this scheduler (which migrations get a runner now: queue.ts, on a
 * WakeableLoop), the pure planner that decides each run's next action (plan.ts), and the
 * executor that performs the actions (executor.ts).
 */
import type { Logger } from "pino";
import type { AgentConnector } from "../cluster/agent-client.js";
import { listMigrations } from "../cluster/store/migrations.js";
import type { Store } from "../cluster/store/store.js";
import { WakeableLoop } from "../lib/wakeable-loop.js";
import { type RunContext, runMigration } from "./executor.js";
import { toRun } from "./queue.js";

/** Orchestrator options. */
export interface OrchestratorOptions {
  /** This cluster's id: the owner in the fencing tokens of the VMs it owns (executor.ts). */
  clusterId: string;
  /** Concurrent outgoing migrations per host; more wait in `queued`. @defaultValue 2 */
  maxOutgoingPerHost?: number;
  /** Concurrent incoming migrations per host. @defaultValue 2 */
  maxIncomingPerHost?: number;
  /** How often progress is read from the source (each phase ends up to one interval late). @defaultValue 200 */
  pollMs?: number;
  /** How long an agent may be unreachable mid-migration before it is rolled back. @defaultValue 60000 */
  unreachableGraceMs?: number;
  /** How long nothing may move mid-transfer (a dead or stalled link) before it is rolled back. @defaultValue 60000 */
  stallGraceMs?: number;
  /** The target of a migration to another cluster (ACP); absent: such migrations are not run. */
  clusterTarget?: RunContext["clusterTarget"];
  /** Told once when a run ends a migration (the server's metrics). */
  onEnded?: RunContext["onEnded"];
}

/** Starts queued migrations within limits and runs each to an end. */
export class MigrationOrchestrator {
  private readonly running = new Map<string, Promise<void>>();
  private readonly loop: WakeableLoop;
  private stopping = true;
  private readonly o: Required<Omit<OrchestratorOptions, "clusterTarget" | "onEnded">> &
    Pick<OrchestratorOptions, "clusterTarget" | "onEnded">;

  /** `wakeVms` wakes the VM controller when a migration hands a VM back to it. */
  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    private readonly wakeVms: () => void,
    private readonly agents: AgentConnector,
    options: OrchestratorOptions,
  ) {
    this.o = {
      clusterId: options.clusterId,
      maxOutgoingPerHost: options.maxOutgoingPerHost ?? 2,
      maxIncomingPerHost: options.maxIncomingPerHost ?? 2,
      pollMs: options.pollMs ?? 200,
      unreachableGraceMs: options.unreachableGraceMs ?? 60_000,
      stallGraceMs: options.stallGraceMs ?? 60_000,
      ...(options.clusterTarget ? { clusterTarget: options.clusterTarget } : {}),
      ...(options.onEnded ? { onEnded: options.onEnded } : {}),
    };
    this.loop = new WakeableLoop({
      pass: () => this.schedule(),
      intervalMs: 1000,
      onError: (err) => this.log.error({ err }, "migration scheduling failed"),
    });
  }

  /** Resumes what a previous server left in flight, then schedules. */
  start(): void {
    this.stopping = false;
    this.loop.start();
  }

  /** Stops scheduling; in-flight runners finish their current step and stop. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.loop.stop();
    await Promise.allSettled(this.running.values());
  }

  /** Looks for work now. */
  wake(): void {
    this.loop.wake();
  }

  /** Whether a runner of this server carries migration `id` now (ACP asks about its hand-offs). */
  isRunning(id: string): boolean {
    return this.running.has(id);
  }

  private async schedule(): Promise<void> {
    const active = await listMigrations(this.store.read, { activeOnly: true });
    const limits = { maxOutgoing: this.o.maxOutgoingPerHost, maxIncoming: this.o.maxIncomingPerHost };
    for (const m of toRun(active, new Set(this.running.keys()), limits)) {
      const run = runMigration(
        {
          store: this.store,
          agents: this.agents,
          clusterId: this.o.clusterId,
          log: this.log,
          wakeVms: this.wakeVms,
          policy: {
            pollMs: this.o.pollMs,
            unreachableGraceMs: this.o.unreachableGraceMs,
            stallGraceMs: this.o.stallGraceMs,
          },
          stopping: () => this.stopping,
          ...(this.o.clusterTarget ? { clusterTarget: this.o.clusterTarget } : {}),
          ...(this.o.onEnded ? { onEnded: this.o.onEnded } : {}),
        },
        m,
      )
        .catch((err) => this.log.error({ err, migration: m.id }, "migration runner crashed"))
        .finally(() => {
          this.running.delete(m.id);
          this.wake();
        });
      this.running.set(m.id, run);
    }
  }
}
