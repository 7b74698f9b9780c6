/**
 * What the HA restarter (ha-restarter.ts) should do next for one VM marked `ha: restart`,
 * decided from the VM, its host's liveness and lease, and the fencing hook's outcome.
 * Pure, so every case is unit-tested (ha-plan.test.ts).
 *
 * The invariant: a VM is restarted elsewhere only once its old copy cannot be running.
 * Its host's agent self-fences (its watchdog kills the VM's QEMU) once it has gone
 * `selfFenceAfterMs` without renewing its lease, counted from the send time of its last
 * renewed heartbeat; the server counts from when it received that heartbeat (later), and
 * waits the whole lease plus a margin. So by `lastHeartbeatAt + leaseMs + marginMs` the
 * old copy has been killed for at least `leaseMs - selfFenceAfterMs + marginMs`, unless
 * the host is so far gone that nothing runs on it at all. A fencing hook (e.g. an IPMI
 * power-off script) that exits 0 for the host proves the same sooner.
 */
import type { VmState } from "../states/vm.js";

/** The VM fields the plan reads. */
export interface HaVm {
  ha: "none" | "restart";
  desiredState: "running" | "stopped" | "deleted";
  state: VmState;
  hostId: string | null;
  storagePoolId: string | null;
  observedReason: string;
}

/** The fencing hook's outcome for the host's current death (keyed by its last heartbeat). */
export type HookOutcome = "not-run" | "running" | "confirmed" | "failed";

/** What the plan knows beyond the VM. */
export interface HaObservations {
  /** Now, epoch ms (the server's clock). */
  now: number;
  /** The VM's host, or undefined when the row is gone. */
  host: { name: string; liveness: "alive" | "dead"; lastHeartbeatAt: number } | undefined;
  /** The lease a heartbeat reply grants. */
  leaseMs: number;
  /** Waited on top of the lease before a restart. */
  marginMs: number;
  /** Whether a fencing hook is configured, and how it went for this death of the host. */
  hook: { configured: false } | { configured: true; outcome: HookOutcome; confirmedAt?: number };
}

/** The next step for one VM. */
export type HaAction =
  /** Nothing to do (not HA, not wanted running, host alive, …); `why` says which. */
  | { kind: "none"; why: string }
  /** The host is dead but its copy may still run: wait until `until` (epoch ms). */
  | { kind: "wait"; until: number; reason: string }
  /** Run the fencing hook for the host now (restart when it exits 0). */
  | { kind: "run-hook" }
  /** The old copy cannot run any more: place the VM on another host and start it there. */
  | { kind: "restart"; by: "lease" | "hook"; allowedAt: number }
  /** The host is back and its watchdog killed the VM (lease ran out, no restart yet): start it there again. */
  | { kind: "start-here" };

/** VM states in which the VM should be running on its host. */
const ACTIVE: readonly VmState[] = ["scheduled", "starting", "running"];

/** The prefix of the reason an agent reports for a VM its watchdog killed. */
export const SELF_FENCED_REASON = "self-fenced";

/** Decides the next HA step for `vm`. */
export function nextHaAction(vm: HaVm, obs: HaObservations): HaAction {
  if (vm.ha !== "restart") return { kind: "none", why: "not an HA VM" };
  if (vm.desiredState !== "running") return { kind: "none", why: `wanted ${vm.desiredState}` };
  if (!vm.storagePoolId) return { kind: "none", why: "its disk is local to its host" };
  if (!vm.hostId || !obs.host) return { kind: "none", why: "it has no host" };
  if (obs.host.liveness === "alive") {
    // A host that came back before the deadline: its watchdog had already killed the VM.
    if (vm.state === "failed" && vm.observedReason.startsWith(SELF_FENCED_REASON))
      return { kind: "start-here" };
    return { kind: "none", why: "its host is alive" };
  }
  if (!ACTIVE.includes(vm.state)) return { kind: "none", why: `it is ${vm.state}` };
  const allowedAt = obs.host.lastHeartbeatAt + obs.leaseMs + obs.marginMs;
  if (obs.now >= allowedAt) return { kind: "restart", by: "lease", allowedAt };
  if (obs.hook.configured) {
    if (obs.hook.outcome === "confirmed")
      return { kind: "restart", by: "hook", allowedAt: obs.hook.confirmedAt ?? obs.now };
    if (obs.hook.outcome === "not-run") return { kind: "run-hook" };
  }
  const hookText = obs.hook.configured
    ? obs.hook.outcome === "failed"
      ? "; the fencing hook did not confirm"
      : " or the fencing hook confirms"
    : "";
  return {
    kind: "wait",
    until: allowedAt,
    reason: `host ${obs.host.name} is dead; HA restart elsewhere once its lease has run out, at ${new Date(allowedAt).toISOString()}${hookText}`,
  };
}
