import { describe, expect, it } from "vitest";
import { isNovaError } from "../lib/errors.js";
import { assertCsrfToken, needsCsrfToken } from "./csrf.js";

const req = (method: string, token?: string) => ({
  method,
  headers: token === undefined ? {} : { "x-csrf-token": token },
});

function refusal(fn: () => void): { status: number; reason: unknown } {
  try {
    fn();
  } catch (err) {
    if (!isNovaError(err, "NOVA_CSRF_REJECTED")) throw err;
    return { status: err.status, reason: err.details.reason };
  }
  throw new Error("not refused");
}

describe("CSRF synchronizer token", () => {
  it("asks for the token on every method that can change something, and not on reads", () => {
    for (const m of ["POST", "PUT", "PATCH", "DELETE", "post"]) expect(needsCsrfToken(m)).toBe(true);
    for (const m of ["GET", "HEAD", "OPTIONS"]) expect(needsCsrfToken(m)).toBe(false);
  });
  it("accepts the session's own token", () => {
    expect(() => assertCsrfToken(req("POST", "abc123"), "abc123")).not.toThrow();
  });
  it("refuses a missing, empty or wrong token with 403 and says which", () => {
    expect(refusal(() => assertCsrfToken(req("POST"), "abc123"))).toEqual({ status: 403, reason: "missing" });
    expect(refusal(() => assertCsrfToken(req("DELETE", ""), "abc123"))).toEqual({
      status: 403,
      reason: "missing",
    });
    expect(refusal(() => assertCsrfToken(req("POST", "abc124"), "abc123"))).toEqual({
      status: 403,
      reason: "mismatch",
    });
    // A prefix or an extension of the token is as wrong as any other value.
    expect(refusal(() => assertCsrfToken(req("POST", "abc12"), "abc123")).reason).toBe("mismatch");
    expect(refusal(() => assertCsrfToken(req("POST", "abc1234"), "abc123")).reason).toBe("mismatch");
  });
});
