import { describe, expect, it } from "vitest";
import { isNovaError } from "../lib/errors.js";
import {
  assertAcceptablePassword,
  hashPassword,
  needsRehash,
  parsePasswordHash,
  SCRYPT_PARAMS,
  verifyPassword,
} from "./password-hash.js";

describe("password hashing (scrypt)", () => {
  it("verifies the password it hashed and nothing else", async () => {
    const stored = await hashPassword("correct horse battery staple");
    expect(await verifyPassword("correct horse battery staple", stored)).toBe(true);
    expect(await verifyPassword("correct horse battery stapl", stored)).toBe(false);
    expect(await verifyPassword("Correct horse battery staple", stored)).toBe(false);
    expect(await verifyPassword("", stored)).toBe(false);
  });

  it("records its parameters and a fresh salt in the hash, never the password", async () => {
    const a = await hashPassword("same password twice");
    const b = await hashPassword("same password twice");
    expect(a).not.toBe(b);
    expect(a).toMatch(/^\$scrypt\$ln=15,r=8,p=3\$[A-Za-z0-9+/]+=*\$[A-Za-z0-9+/]+=*$/);
    expect(a).not.toContain("same password");
    const parsed = parsePasswordHash(a);
    expect(parsed.params).toEqual(SCRYPT_PARAMS);
    expect(parsed.salt).toHaveLength(16);
    expect(parsed.key).toHaveLength(32);
  });

  it("verifies a hash made under older, weaker parameters and asks for a re-hash", async () => {
    const old = await hashPassword("an older password", { ln: 12, r: 8, p: 1 });
    expect(await verifyPassword("an older password", old)).toBe(true);
    expect(needsRehash(old)).toBe(true);
    expect(needsRehash(await hashPassword("a current password"))).toBe(false);
  });

  it("refuses a stored hash it cannot read or whose cost is beyond its bounds", () => {
    for (const bad of [
      "",
      "plaintext",
      "$scrypt$ln=15,r=8,p=1$$",
      "$scrypt$ln=40,r=8,p=1$AAAA$AAAA",
      "$argon2id$v=19$x",
    ]) {
      expect(() => parsePasswordHash(bad)).toThrow(/not in a format/);
    }
  });

  it("accepts passwords of 12 to 1024 characters only", () => {
    expect(() => assertAcceptablePassword("twelve chars")).not.toThrow();
    for (const bad of ["short", "x".repeat(1025)]) {
      try {
        assertAcceptablePassword(bad);
        expect.unreachable();
      } catch (err) {
        expect(isNovaError(err, "NOVA_BAD_REQUEST")).toBe(true);
      }
    }
  });
});
