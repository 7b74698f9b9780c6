/**
 * What the reconciler should do next for one VM, decided from its lifecycle state, its
 * generation and what its host's agent last reported for that generation. Pure, so every
 * branch is unit-tested; reconciler.ts executes the decision.
 *
 * A report counts only when it is about the VM's current generation: every user action
 * bumps the generation, so a late report about the previous start or stop cannot move
 * the VM.
 */

import type { VmState } from "../states/vm.js";
import type { VmRecord } from "./store/vms.js";

/** One step for one VM. */
export type ReconcileDecision =
  | { kind: "none" }
  | { kind: "put"; power: "running" | "stopped"; onAccepted?: { to: VmState; reason: string } }
  | { kind: "delete" }
  | {
      kind: "transition";
      to: VmState;
      reason: string;
      desiredState?: "running" | "stopped";
      restartPending?: boolean;
      bumpGeneration?: boolean;
    };

/** The facts the decision needs beyond the VM row. */
export interface ReconcileContext {
  hostAlive: boolean;
  /** The reconciler asked the agent for this (generation, power) recently; don't ask again yet. */
  recentlyAsked: (power: "running" | "stopped" | "delete") => boolean;
}

/** Decides the next step for `vm`. */
export function decide(vm: VmRecord, ctx: ReconcileContext): ReconcileDecision {
  if (!vm.hostId || !ctx.hostAlive) return { kind: "none" };
  const current = vm.observedGeneration === vm.generation ? vm.observedState : undefined;
  const reason = vm.observedReason;
  const ask = (
    power: "running" | "stopped",
    onAccepted?: { to: VmState; reason: string },
  ): ReconcileDecision =>
    ctx.recentlyAsked(power)
      ? { kind: "none" }
      : onAccepted
        ? { kind: "put", power, onAccepted }
        : { kind: "put", power };

  switch (vm.state) {
    case "pending":
      // Placement happens at create time; a pending VM has nothing to reconcile yet.
      return { kind: "none" };
    case "scheduled":
      return ask("running", { to: "starting", reason: "agent is starting QEMU" });
    case "starting":
      if (current === "running") return { kind: "transition", to: "running", reason: "QEMU is running" };
      if (current === "failed")
        return { kind: "transition", to: "failed", reason: reason || "QEMU failed to start" };
      if (current === "stopped") return poweredOff(reason);
      return current === "starting" ? { kind: "none" } : ask("running");
    case "running":
      if (current === "failed")
        return { kind: "transition", to: "failed", reason: reason || "QEMU exited unexpectedly" };
      if (current === "stopped") return poweredOff(reason);
      return current === "running" || current === "starting" ? { kind: "none" } : ask("running");
    case "stopping":
      if (current === "stopped" || current === "failed") {
        return vm.restartPending
          ? { kind: "transition", to: "stopped", reason: "stopped for restart" }
          : { kind: "transition", to: "stopped", reason: reason || "stopped" };
      }
      return current === "stopping" ? { kind: "none" } : ask("stopped");
    case "stopped":
      if (vm.restartPending) {
        return {
          kind: "transition",
          to: "starting",
          reason: "restarting",
          restartPending: false,
          bumpGeneration: true,
        };
      }
      // The agent must not run a VM the server considers stopped (e.g. a start that raced a stop).
      return current === "stopped" || current === "failed" ? { kind: "none" } : ask("stopped");
    case "failed":
      return { kind: "none" };
    case "migrating":
      // The migration orchestrator owns the VM until its migration ends.
      return { kind: "none" };
    case "arriving":
      // Not this cluster's yet: the hand-off (federation/acp) alone may resume its copy.
      return { kind: "none" };
    case "deleting":
      return ctx.recentlyAsked("delete") ? { kind: "none" } : { kind: "delete" };
  }
}

/** The guest powered itself off: the VM is stopped and no longer wanted running. */
function poweredOff(reason: string): ReconcileDecision {
  return {
    kind: "transition",
    to: "stopped",
    reason: reason || "the guest powered off",
    desiredState: "stopped",
  };
}
