import { describe, expect, it } from "vitest";
import { type HaObservations, type HaVm, nextHaAction } from "./ha-plan.js";

const T0 = Date.parse("2026-12-07T03:00:00Z");
const vm = (over: Partial<HaVm> = {}): HaVm => ({
  ha: "restart",
  desiredState: "running",
  state: "running",
  hostId: "h1",
  storagePoolId: "p1",
  observedReason: "",
  ...over,
});
const obs = (over: Partial<HaObservations> = {}): HaObservations => ({
  now: T0 + 12_000,
  host: { name: "a1", liveness: "dead", lastHeartbeatAt: T0 },
  leaseMs: 15_000,
  marginMs: 5_000,
  hook: { configured: false },
  ...over,
});

describe("the HA plan", () => {
  it("leaves a VM without HA alone, even on a dead host long past its lease", () => {
    expect(nextHaAction(vm({ ha: "none" }), obs({ now: T0 + 600_000 })).kind).toBe("none");
  });

  it("leaves a VM the user wants stopped or deleted alone", () => {
    expect(nextHaAction(vm({ desiredState: "stopped" }), obs({ now: T0 + 60_000 })).kind).toBe("none");
    expect(
      nextHaAction(vm({ desiredState: "deleted", state: "deleting" }), obs({ now: T0 + 60_000 })).kind,
    ).toBe("none");
  });

  it("never restarts a VM whose disk is local to its host", () => {
    expect(nextHaAction(vm({ storagePoolId: null }), obs({ now: T0 + 60_000 }))).toMatchObject({
      kind: "none",
      why: "its disk is local to its host",
    });
  });

  it("does nothing while the host is alive", () => {
    expect(
      nextHaAction(
        vm(),
        obs({ host: { name: "a1", liveness: "alive", lastHeartbeatAt: T0 }, now: T0 + 60_000 }),
      ),
    ).toMatchObject({ kind: "none", why: "its host is alive" });
  });

  it("does nothing for a VM without a host row", () => {
    expect(nextHaAction(vm(), obs({ host: undefined })).kind).toBe("none");
    expect(nextHaAction(vm({ hostId: null }), obs()).kind).toBe("none");
  });

  it("waits on a dead host until the last renewal plus the lease plus the margin has passed", () => {
    const a = nextHaAction(vm(), obs({ now: T0 + 19_999 }));
    expect(a).toMatchObject({ kind: "wait", until: T0 + 20_000 });
    if (a.kind === "wait") expect(a.reason).toContain("host a1 is dead");
  });

  it("restarts once the lease plus the margin has passed", () => {
    expect(nextHaAction(vm(), obs({ now: T0 + 20_000 }))).toEqual({
      kind: "restart",
      by: "lease",
      allowedAt: T0 + 20_000,
    });
  });

  it("restarts scheduled and starting VMs too, but not migrating, stopping, stopped or failed ones", () => {
    for (const state of ["scheduled", "starting"] as const)
      expect(nextHaAction(vm({ state }), obs({ now: T0 + 30_000 })).kind).toBe("restart");
    for (const state of ["migrating", "stopping", "stopped", "failed", "arriving", "pending"] as const)
      expect(nextHaAction(vm({ state }), obs({ now: T0 + 30_000 })).kind).toBe("none");
  });

  it("runs the fencing hook first when one is configured, and restarts as soon as it confirms", () => {
    expect(nextHaAction(vm(), obs({ hook: { configured: true, outcome: "not-run" } }))).toEqual({
      kind: "run-hook",
    });
    expect(nextHaAction(vm(), obs({ hook: { configured: true, outcome: "running" } })).kind).toBe("wait");
    expect(
      nextHaAction(vm(), obs({ hook: { configured: true, outcome: "confirmed", confirmedAt: T0 + 11_000 } })),
    ).toEqual({ kind: "restart", by: "hook", allowedAt: T0 + 11_000 });
  });

  it("falls back to the lease when the fencing hook fails", () => {
    const waiting = nextHaAction(vm(), obs({ hook: { configured: true, outcome: "failed" } }));
    expect(waiting).toMatchObject({ kind: "wait", until: T0 + 20_000 });
    if (waiting.kind === "wait") expect(waiting.reason).toContain("did not confirm");
    expect(
      nextHaAction(vm(), obs({ now: T0 + 20_000, hook: { configured: true, outcome: "failed" } })),
    ).toMatchObject({
      kind: "restart",
      by: "lease",
    });
  });

  it("starts a self-fenced VM again on its host when the host came back before any restart", () => {
    const back = { name: "a1", liveness: "alive" as const, lastHeartbeatAt: T0 + 14_000 };
    expect(
      nextHaAction(
        vm({ state: "failed", observedReason: "self-fenced: lease not renewed" }),
        obs({ host: back }),
      ),
    ).toEqual({ kind: "start-here" });
    expect(
      nextHaAction(vm({ state: "failed", observedReason: "QEMU exited" }), obs({ host: back })).kind,
    ).toBe("none");
  });
});
