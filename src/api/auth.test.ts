import { describe, expect, it } from "vitest";
import { authorize, type Principal } from "./auth.js";

const p = (kind: Principal["kind"]): Principal => ({ kind, id: "x", name: "x" });

describe("authorization check point", () => {
  it("lets admin tokens use the API but not act as an agent", () => {
    expect(authorize(p("admin"), "vms:write")).toBe(true);
    expect(authorize(p("admin"), "agent:heartbeat")).toBe(false);
  });
  it("gives an old API join token nothing", () => {
    expect(authorize(p("join"), "vms:read")).toBe(false);
    expect(authorize(p("join"), "agent:heartbeat")).toBe(false);
  });
  it("lets a host credential only heartbeat", () => {
    expect(authorize(p("host"), "agent:heartbeat")).toBe(true);
    expect(authorize(p("host"), "hosts:write")).toBe(false);
  });
  it("denies unknown principal kinds", () => {
    expect(authorize({ kind: "robot" } as unknown as Principal, "vms:read")).toBe(false);
  });
  it("gives executions:approve-own to no kind, only to a token granted it", () => {
    expect(authorize(p("admin"), "executions:approve")).toBe(true);
    expect(authorize(p("admin"), "executions:approve-own")).toBe(false);
    expect(authorize({ ...p("admin"), grants: ["executions:approve-own"] }, "executions:approve-own")).toBe(
      true,
    );
  });
  it("never lets a grant add a permission that is not grantable", () => {
    expect(authorize({ ...p("join"), grants: ["vms:write", "agent:heartbeat"] }, "vms:write")).toBe(false);
    expect(authorize({ ...p("join"), grants: ["agent:heartbeat"] }, "agent:heartbeat")).toBe(false);
    expect(
      authorize(
        { kind: "robot", id: "x", name: "x", grants: ["executions:approve-own"] } as unknown as Principal,
        "executions:approve-own",
      ),
    ).toBe(false);
  });
});
