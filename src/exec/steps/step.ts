/**
 * The contract every step kind implements, and the registry of kinds. A step gets an
 * AbortSignal (cancel, time limits, lease loss) it must honour, reports progress and log
 * lines (masked before they are stored), and may save a checkpoint so that a retry after a
 * crash resumes instead of repeating what already happened.
 */
import type { PlanStep } from "../../api/types/executions.js";
import type { AgentConnector } from "../../cluster/agent-client.js";
import type { Store } from "../../cluster/store/store.js";
import type { VmService } from "../../cluster/vm-service.js";
import type { MigrationService } from "../../migration/migration-service.js";

/** Services steps act through (the same ones the API uses). */
export interface StepServices {
  store: Store;
  /** Clients for the hosts' agents. */
  agents: AgentConnector;
  vms: VmService;
  migrations?: MigrationService;
}

/** What a running step can use. */
export interface StepContext {
  signal: AbortSignal;
  services: StepServices;
  /** A log line (masked before it is stored or sent). */
  log(message: string, level?: "info" | "warn" | "error"): void;
  /** Progress of this step, 0-100, with a short message. */
  progress(pct: number, message?: string): void;
  /** What an interrupted earlier attempt of this step saved ({} when none). */
  checkpoint: Record<string, unknown>;
  /** Saves a checkpoint durably before doing something that must not be repeated. */
  saveCheckpoint(data: Record<string, unknown>): Promise<void>;
  /** True when an earlier attempt of this step was interrupted (worker crash). */
  resumed: boolean;
}

/** A step kind. */
export interface StepKind<S extends PlanStep = PlanStep> {
  /** Whether an interrupted attempt may simply run again (or resumes from its checkpoint). */
  resumable(step: S): boolean;
  /** Runs the step; resolves with its result (stored masked). */
  run(step: S, ctx: StepContext): Promise<Record<string, unknown>>;
}

/** Resolves after `ms`, or rejects with the signal's reason. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    function onAbort() {
      clearTimeout(t);
      reject(signal.reason);
    }
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** The VMs a VM step acts on, in order. */
export function vmTargets(step: { vm?: string | undefined; vms?: string[] | undefined }): string[] {
  return [...(step.vm ? [step.vm] : []), ...(step.vms ?? [])];
}
