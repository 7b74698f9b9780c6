import { describe, expect, it } from "vitest";
import { bearerToken, secretsEqual } from "./bearer.js";
import { isNovaError } from "./errors.js";

const req = (authorization?: string) => ({ headers: authorization === undefined ? {} : { authorization } });

function unauthenticated(f: () => unknown): string {
  try {
    f();
  } catch (err) {
    if (isNovaError(err, "NOVA_UNAUTHENTICATED")) return err.message;
    throw err;
  }
  throw new Error("expected NOVA_UNAUTHENTICATED");
}

describe("bearerToken", () => {
  it("reads the token, whatever the scheme's case", () => {
    expect(bearerToken(req("Bearer nvt_abc"))).toBe("nvt_abc");
    expect(bearerToken(req("bearer  nvh_x"))).toBe("nvh_x");
  });

  it("says how to send a missing token", () => {
    expect(unauthenticated(() => bearerToken(req()))).toMatch(/Missing bearer token/);
  });

  it("refuses another scheme or a token with spaces", () => {
    expect(unauthenticated(() => bearerToken(req("Basic dXNlcjpwdw==")))).toMatch(/Malformed/);
    expect(unauthenticated(() => bearerToken(req("Bearer a b")))).toMatch(/Malformed/);
  });
});

describe("secretsEqual", () => {
  it("compares secrets of different lengths safely", () => {
    expect(secretsEqual("abc", "abc")).toBe(true);
    expect(secretsEqual("abc", "abd")).toBe(false);
    expect(secretsEqual("abc", "abcd")).toBe(false);
  });
});
