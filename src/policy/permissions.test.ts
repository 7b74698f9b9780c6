import { describe, expect, it } from "vitest";
import { authorize, type Principal } from "./permissions.js";

const user = (role: "admin" | "operator" | "viewer"): Principal => ({
  kind: "user",
  id: "u",
  name: "u",
  role,
});

describe("placement permissions", () => {
  it("lets every role read placement groups, operators and admins change them, viewers not", () => {
    for (const role of ["admin", "operator", "viewer"] as const)
      expect(authorize(user(role), "placement:read")).toBe(true);
    expect(authorize(user("admin"), "placement:write")).toBe(true);
    expect(authorize(user("operator"), "placement:write")).toBe(true);
    expect(authorize(user("viewer"), "placement:write")).toBe(false);
    expect(authorize({ kind: "admin", id: "t", name: "t" }, "placement:write")).toBe(true);
    expect(authorize({ kind: "host", id: "h", name: "h" }, "placement:read")).toBe(false);
  });
});
