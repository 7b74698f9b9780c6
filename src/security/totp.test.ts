import { describe, expect, it } from "vitest";
import {
  hashRecoveryCode,
  newRecoveryCodes,
  normaliseRecoveryCode,
  RECOVERY_CODE_COUNT,
} from "./recovery-codes.js";
import { matchTotp, newTotpSecret, totpCode, totpStep, totpUri } from "./totp.js";

// RFC 6238 appendix B's SHA-1 seed "12345678901234567890", in base32.
const RFC_SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

describe("TOTP (RFC 6238: SHA-1, 6 digits, 30 s)", () => {
  it("computes the RFC's test vectors (their last six digits)", () => {
    expect(totpCode(RFC_SECRET, 59_000)).toBe("287082");
    expect(totpCode(RFC_SECRET, 1_111_111_109_000)).toBe("081804");
    expect(totpCode(RFC_SECRET, 1_234_567_890_000)).toBe("005924");
    expect(totpCode(RFC_SECRET, 2_000_000_000_000)).toBe("279037");
  });

  it("accepts a code in its own step or one either side, and says which step it was", () => {
    const now = 1_700_000_015_000;
    const step = totpStep(now);
    expect(matchTotp(RFC_SECRET, totpCode(RFC_SECRET, now), now)).toBe(step);
    expect(matchTotp(RFC_SECRET, totpCode(RFC_SECRET, now - 30_000), now)).toBe(step - 1);
    expect(matchTotp(RFC_SECRET, totpCode(RFC_SECRET, now + 30_000), now)).toBe(step + 1);
    expect(matchTotp(RFC_SECRET, totpCode(RFC_SECRET, now - 60_000), now)).toBeUndefined();
    expect(matchTotp(RFC_SECRET, totpCode(RFC_SECRET, now + 60_000), now)).toBeUndefined();
  });

  it("refuses anything that is not six digits, and another secret's code", () => {
    const now = 1_700_000_015_000;
    const code = totpCode(RFC_SECRET, now);
    expect(matchTotp(RFC_SECRET, `${code}0`, now)).toBeUndefined();
    expect(matchTotp(RFC_SECRET, code.slice(1), now)).toBeUndefined();
    expect(matchTotp(RFC_SECRET, "abcdef", now)).toBeUndefined();
    expect(matchTotp(RFC_SECRET, ` ${code.slice(0, 3)} ${code.slice(3)} `, now)).toBe(totpStep(now));
    expect(matchTotp(newTotpSecret(), code, now)).toBeUndefined();
  });

  it("makes 160-bit secrets and the otpauth URI authenticator apps scan", () => {
    const secret = newTotpSecret();
    expect(secret).toMatch(/^[A-Z2-7]{32}$/);
    expect(newTotpSecret()).not.toBe(secret);
    const uri = new URL(totpUri(secret, "alice"));
    expect(uri.protocol).toBe("otpauth:");
    expect(uri.host).toBe("totp");
    expect(decodeURIComponent(uri.pathname)).toBe("/NovaCron:alice");
    expect(Object.fromEntries(uri.searchParams)).toMatchObject({
      secret,
      issuer: "NovaCron",
      algorithm: "SHA1",
      digits: "6",
      period: "30",
    });
  });
});

describe("recovery codes", () => {
  it("makes ten distinct 80-bit codes in groups of four", () => {
    const codes = newRecoveryCodes();
    expect(codes).toHaveLength(RECOVERY_CODE_COUNT);
    expect(new Set(codes).size).toBe(RECOVERY_CODE_COUNT);
    for (const c of codes) expect(c).toMatch(/^[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}$/);
  });

  it("hashes a code the same however it is typed, and never stores it as is", () => {
    const [code] = newRecoveryCodes() as [string];
    const hash = hashRecoveryCode(code);
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    expect(hashRecoveryCode(code.toLowerCase())).toBe(hash);
    expect(hashRecoveryCode(code.replaceAll("-", " "))).toBe(hash);
    expect(normaliseRecoveryCode("abio-0l1u")).toBe("AB10011U");
    expect(hashRecoveryCode(`${code.slice(0, -1)}${code.endsWith("0") ? "1" : "0"}`)).not.toBe(hash);
  });
});
