import { describe, expect, it } from "vitest";
import { permissionsOf } from "../policy/permissions.js";
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
  it("gives users:read and users:write to admin tokens and admin users only", () => {
    const user = (role: "admin" | "operator" | "viewer"): Principal => ({
      kind: "user",
      id: "u",
      name: "u",
      role,
    });
    for (const perm of ["users:read", "users:write"] as const) {
      expect(authorize(p("admin"), perm)).toBe(true);
      expect(authorize(user("admin"), perm)).toBe(true);
      expect(authorize(user("operator"), perm)).toBe(false);
      expect(authorize(user("viewer"), perm)).toBe(false);
    }
  });
  it("lets a viewer read and nothing else", () => {
    const viewer: Principal = { kind: "user", id: "u", name: "v", role: "viewer" };
    for (const perm of [
      "hosts:read",
      "vms:read",
      "images:read",
      "events:read",
      "executions:read",
      "federation:read",
    ] as const)
      expect(authorize(viewer, perm)).toBe(true);
    for (const perm of [
      "vms:write",
      "hosts:write",
      "executions:write",
      "executions:approve",
      "secrets:read",
      "tokens:read",
    ] as const)
      expect(authorize(viewer, perm)).toBe(false);
    expect(permissionsOf(viewer).every((perm) => perm.endsWith(":read"))).toBe(true);
  });
  it("lets an operator run the fleet but not manage tokens, users, secrets, peers or run commands on hosts", () => {
    const op: Principal = { kind: "user", id: "u", name: "o", role: "operator" };
    for (const perm of [
      "vms:write",
      "hosts:write",
      "images:write",
      "executions:write",
      "executions:approve",
      "secrets:use",
    ] as const)
      expect(authorize(op, perm)).toBe(true);
    for (const perm of [
      "tokens:write",
      "users:write",
      "federation:write",
      "secrets:write",
      "hosts:exec",
      "executions:http",
      "agent:heartbeat",
    ] as const)
      expect(authorize(op, perm)).toBe(false);
  });
  it("gives a user no grants and a user without a known role nothing", () => {
    expect(
      authorize(
        { kind: "user", id: "u", name: "a", role: "admin", grants: ["executions:approve-own"] },
        "executions:approve-own",
      ),
    ).toBe(false);
    expect(authorize({ kind: "user", id: "u", name: "x" }, "vms:read")).toBe(false);
    expect(
      authorize({ kind: "user", id: "u", name: "x", role: "root" } as unknown as Principal, "vms:read"),
    ).toBe(false);
  });
});
