/**
 * MFA recovery codes: ten single-use codes handed to a user once, when their TOTP
 * enrolment is confirmed, for the day their phone is lost. Each is 80 random bits written
 * as four groups of four characters from a 32-letter alphabet without look-alikes
 * (`K7QH-2XMC-…`); they are stored only as SHA-256 hashes, which is enough at 80 bits
 * (no dictionary to try, 2^80 guesses per code).
 */
import { createHash, randomBytes } from "node:crypto";

/** How many codes an enrolment gets. */
export const RECOVERY_CODE_COUNT = 10;

// Crockford's base32 alphabet: no I, L, O, U.
const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/** One fresh code, `XXXX-XXXX-XXXX-XXXX`. */
export function newRecoveryCode(): string {
  const bytes = randomBytes(16);
  let out = "";
  for (let i = 0; i < 16; i++) {
    // 256 is a multiple of 32, so the low five bits are uniform.
    out += ALPHABET[bytes[i]! & 31];
    if (i % 4 === 3 && i < 15) out += "-";
  }
  return out;
}

/** `RECOVERY_CODE_COUNT` fresh, distinct codes. */
export function newRecoveryCodes(): string[] {
  const codes = new Set<string>();
  while (codes.size < RECOVERY_CODE_COUNT) codes.add(newRecoveryCode());
  return [...codes];
}

/** A code as typed (any case, with or without dashes and spaces, Crockford's look-alikes) in its one canonical form. */
export function normaliseRecoveryCode(input: string): string {
  return input
    .toUpperCase()
    .replace(/[\s-]+/g, "")
    .replace(/[IL]/g, "1")
    .replace(/O/g, "0");
}

/** The stored form of a code: SHA-256 of its canonical form, hex. */
export function hashRecoveryCode(code: string): string {
  return createHash("sha256").update(normaliseRecoveryCode(code)).digest("hex");
}
