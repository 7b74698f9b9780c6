import { describe, expect, it } from "vitest";
import { isNovaError } from "../lib/errors.js";
import {
  ALLOWED_ACTIONS,
  assertActionAllowed,
  assertTransition,
  isVmState,
  TRANSITIONS,
  VM_STATES,
} from "./vm.js";

const states = Object.keys(VM_STATES) as (keyof typeof VM_STATES)[];

describe("VM state machine", () => {
  it("refuses to stop a stopped VM, naming its state and what it allows", () => {
    try {
      assertActionAllowed("web1", "stopped", "stop");
      expect.unreachable();
    } catch (err) {
      expect(isNovaError(err, "NOVA_ILLEGAL_STATE")).toBe(true);
      if (!isNovaError(err)) throw err;
      expect(err.status).toBe(409);
      expect(err.message).toContain("it is stopped");
      expect(err.message).toContain("start, delete");
      expect(err.details).toMatchObject({
        state: "stopped",
        action: "stop",
        allowedActions: ["start", "delete"],
      });
    }
  });

  it("allows nothing on a VM that is being deleted", () => {
    for (const action of ["start", "stop", "restart", "delete"] as const) {
      expect(() => assertActionAllowed("x", "deleting", action)).toThrow(/nothing until it finishes/);
    }
  });

  it("lets every state except deleting, migrating and arriving reach deleting by a user's action", () => {
    for (const s of states) {
      // A migrating VM is deleted after its migration is cancelled, never mid-flight; an
      // arriving one is not this cluster's to delete until its hand-off ends.
      if (s === "deleting" || s === "migrating" || s === "arriving") continue;
      expect(TRANSITIONS[s]).toContain("deleting");
      expect(ALLOWED_ACTIONS[s]).toContain("delete");
    }
  });

  it("has every allowed action lead to a legal transition", () => {
    const target = {
      start: "starting",
      stop: "stopping",
      restart: "stopping",
      delete: "deleting",
      migrate: "migrating",
    } as const;
    for (const s of states) {
      for (const action of ALLOWED_ACTIONS[s]) {
        const to = target[action];
        // Stopping a VM that never started goes straight to stopped.
        const ok = TRANSITIONS[s].includes(to) || (action === "stop" && TRANSITIONS[s].includes("stopped"));
        expect(ok, `${s} --${action}--> ${to}`).toBe(true);
      }
    }
  });

  it("rejects transitions that skip the machine", () => {
    expect(() => assertTransition("pending", "running")).toThrow(/pending → running/);
    expect(() => assertTransition("stopped", "running")).toThrow();
    expect(() => assertTransition("running", "running")).not.toThrow();
  });

  it("recognises states", () => {
    expect(isVmState("running")).toBe(true);
    expect(isVmState("migrating")).toBe(true);
    expect(isVmState("teleporting")).toBe(false);
    expect(isVmState("toString")).toBe(false);
  });
});
