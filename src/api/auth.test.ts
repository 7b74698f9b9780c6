import { describe, expect, it } from "vitest";
import { authorize, type Principal, secretsEqual } from "./auth.js";

const p = (kind: Principal["kind"]): Principal => ({ kind, id: "x", name: "x" });

describe("authorization check point", () => {
  it("lets admin tokens use the API but not act as an agent", () => {
    expect(authorize(p("admin"), "vms:write")).toBe(true);
    expect(authorize(p("admin"), "agent:heartbeat")).toBe(false);
  });
  it("lets a join token only register agents", () => {
    expect(authorize(p("join"), "agent:register")).toBe(true);
    expect(authorize(p("join"), "vms:read")).toBe(false);
  });
  it("lets a host credential only heartbeat", () => {
    expect(authorize(p("host"), "agent:heartbeat")).toBe(true);
    expect(authorize(p("host"), "hosts:write")).toBe(false);
  });
  it("denies unknown principal kinds", () => {
    expect(authorize({ kind: "robot" } as unknown as Principal, "vms:read")).toBe(false);
  });
  it("compares secrets of different lengths safely", () => {
    expect(secretsEqual("abc", "abc")).toBe(true);
    expect(secretsEqual("abc", "abcd")).toBe(false);
  });
});
