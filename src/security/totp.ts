/**
 * TOTP second factor (RFC 6238) as authenticator apps expect it: SHA-1, 6 digits, a 30 s
 * step, a 160-bit secret in base32, and the otpauth:// URI they scan as a QR code. A code
 * is accepted in its own step or one step either side (clock skew between phone and
 * server); which step matched is returned so the caller can refuse a step it already
 * accepted (RFC 6238 §5.2: a code is valid once). The code comparison is constant-time
 * (otpauth's).
 */
import * as OTPAuth from "otpauth";

/** The TOTP settings every authenticator app supports. */
export const TOTP_SETTINGS = { algorithm: "SHA1", digits: 6, period: 30, window: 1 } as const;

/** A fresh random secret, base32 (20 bytes, as RFC 4226 recommends). */
export function newTotpSecret(): string {
  return new OTPAuth.Secret({ size: 20 }).base32;
}

function totp(secret: string, label = "novacron", issuer = "NovaCron"): OTPAuth.TOTP {
  return new OTPAuth.TOTP({
    issuer,
    label,
    secret: OTPAuth.Secret.fromBase32(secret),
    algorithm: TOTP_SETTINGS.algorithm,
    digits: TOTP_SETTINGS.digits,
    period: TOTP_SETTINGS.period,
  });
}

/** The otpauth:// URI an authenticator app scans: `otpauth://totp/ISSUER:ACCOUNT?secret=…`. */
export function totpUri(secret: string, account: string, issuer = "NovaCron"): string {
  return totp(secret, account, issuer).toString();
}

/** The time step (30 s periods since the epoch) at `nowMs`. */
export function totpStep(nowMs = Date.now()): number {
  return Math.floor(nowMs / 1000 / TOTP_SETTINGS.period);
}

/**
 * The time step whose code `code` is, within one step of `nowMs`; undefined when it is no
 * code of those steps (or not six digits).
 */
export function matchTotp(secret: string, code: string, nowMs = Date.now()): number | undefined {
  const token = code.replace(/\s+/g, "");
  if (!/^\d{6}$/.test(token)) return undefined;
  const delta = totp(secret).validate({ token, timestamp: nowMs, window: TOTP_SETTINGS.window });
  return delta === null ? undefined : totpStep(nowMs) + delta;
}

/** The code of `secret` at `nowMs` (what the authenticator app shows; tests and the CLI's own checks). */
export function totpCode(secret: string, nowMs = Date.now()): string {
  return totp(secret).generate({ timestamp: nowMs });
}
