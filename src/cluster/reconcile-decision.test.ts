import { describe, expect, it } from "vitest";
import { decide } from "./reconcile-decision.js";
import type { VmRecord } from "./store/vms.js";

const vm = (over: Partial<VmRecord>): VmRecord => ({
  id: "00000000-0000-4000-8000-000000000001",
  name: "vm1",
  image: "guest",
  imageId: "i",
  vcpus: 1,
  memoryMiB: 128,
  kernelArgs: "",
  machineType: "pc-q35-10.0",
  hostSelector: {},
  requiredSite: null,
  desiredState: "running",
  state: "running",
  stateReason: "",
  observedState: "unknown",
  observedReason: "",
  observedGeneration: 0,
  host: "h1",
  hostId: "h",
  generation: 3,
  restartPending: false,
  ownerClusterId: null,
  ownerEpoch: 1,
  ha: "none",
  storagePool: null,
  storagePoolId: null,
  storagePoolPath: null,
  haMovedFromHostId: null,
  createdAt: "",
  updatedAt: "",
  stateChangedAt: "",
  ...over,
});
const ctx = { hostAlive: true, recentlyAsked: () => false };

describe("reconcile decisions", () => {
  it("asks the agent to start a scheduled VM, then moves it to starting", () => {
    expect(decide(vm({ state: "scheduled" }), ctx)).toEqual({
      kind: "put",
      power: "running",
      onAccepted: { to: "starting", reason: "agent is starting QEMU" },
    });
  });

  it("marks a starting VM running once the agent reports it running for this generation", () => {
    expect(
      decide(vm({ state: "starting", observedState: "running", observedGeneration: 3 }), ctx),
    ).toMatchObject({ kind: "transition", to: "running" });
  });

  it("ignores a report about an older generation", () => {
    // A 'running' left over from before a restart must not complete the new start.
    expect(decide(vm({ state: "starting", observedState: "running", observedGeneration: 2 }), ctx)).toEqual({
      kind: "put",
      power: "running",
    });
  });

  it("fails a running VM whose QEMU died, carrying the agent's reason", () => {
    const d = decide(
      vm({ observedState: "failed", observedReason: "QEMU was killed by SIGKILL", observedGeneration: 3 }),
      ctx,
    );
    expect(d).toEqual({ kind: "transition", to: "failed", reason: "QEMU was killed by SIGKILL" });
  });

  it("records a guest-initiated power-off as stopped and stops wanting it running", () => {
    const d = decide(
      vm({
        observedState: "stopped",
        observedReason: "guest powered off (guest-shutdown)",
        observedGeneration: 3,
      }),
      ctx,
    );
    expect(d).toMatchObject({ kind: "transition", to: "stopped", desiredState: "stopped" });
  });

  it("does nothing for VMs on a dead host", () => {
    expect(decide(vm({ state: "scheduled" }), { ...ctx, hostAlive: false })).toEqual({ kind: "none" });
    expect(decide(vm({ state: "deleting" }), { ...ctx, hostAlive: false })).toEqual({ kind: "none" });
  });

  it("does not repeat a request it made recently", () => {
    expect(decide(vm({ state: "stopping" }), { ...ctx, recentlyAsked: () => true })).toEqual({
      kind: "none",
    });
  });

  it("restarts: stopping → stopped → starting with a new generation", () => {
    const stopping = vm({
      state: "stopping",
      restartPending: true,
      observedState: "stopped",
      observedGeneration: 3,
    });
    expect(decide(stopping, ctx)).toMatchObject({
      kind: "transition",
      to: "stopped",
      reason: "stopped for restart",
    });
    const stopped = vm({
      state: "stopped",
      restartPending: true,
      observedState: "stopped",
      observedGeneration: 3,
    });
    expect(decide(stopped, ctx)).toMatchObject({
      kind: "transition",
      to: "starting",
      restartPending: false,
      bumpGeneration: true,
    });
  });

  it("stops a VM the agent still runs although the server has it stopped", () => {
    expect(
      decide(
        vm({ state: "stopped", desiredState: "stopped", observedState: "running", observedGeneration: 3 }),
        ctx,
      ),
    ).toEqual({ kind: "put", power: "stopped" });
  });

  it("asks the agent to delete a deleting VM", () => {
    expect(decide(vm({ state: "deleting" }), ctx)).toEqual({ kind: "delete" });
  });

  it("leaves a VM arriving from another cluster to its hand-off, whatever its agent reports", () => {
    for (const observedState of ["running", "stopped", "failed", "unknown"])
      expect(decide(vm({ state: "arriving", observedState, observedGeneration: 3 }), ctx)).toEqual({
        kind: "none",
      });
  });
});
