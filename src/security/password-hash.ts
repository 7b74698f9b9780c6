/**
 * Password hashing with scrypt (Node's built-in, memory-hard; RFC 7914). A hash records
 * its parameters, so they can be raised later without invalidating stored passwords:
 * `needsRehash` tells the login path to re-hash a password that verified under older,
 * weaker parameters.
 *
 * Format (PHC-like): `$scrypt$ln=15,r=8,p=3$<salt, base64>$<hash, base64>`, where N = 2^ln.
 * The defaults, N = 2^15, r = 8, p = 3, are one of OWASP's recommended scrypt settings
 * (Password Storage Cheat Sheet: 2^17/8/1, 2^16/8/2, 2^15/8/3 … are equivalent): 32 MiB of
 * memory per hash, which is what makes a GPU or ASIC guesser expensive, and about 0.2 s
 * of one core, which bounds how fast even a stolen database can be guessed against. Each
 * password gets a fresh 16-byte salt; the derived key is 32 bytes; verification compares
 * in constant time.
 */
import { randomBytes, scrypt as scryptCb, timingSafeEqual } from "node:crypto";
import { NovaError } from "../lib/errors.js";

/** scrypt's cost parameters. */
export interface ScryptParams {
  /** log2 of N, the CPU/memory cost. */
  ln: number;
  /** Block size. */
  r: number;
  /** Parallelism. */
  p: number;
}

/** The parameters new hashes are made with. */
export const SCRYPT_PARAMS = { ln: 15, r: 8, p: 3 } as const satisfies ScryptParams;

const SALT_BYTES = 16;
const KEY_BYTES = 32;
/** Stored hashes with a larger cost are refused rather than computed (a tampered row must not exhaust memory). */
const MAX_LN = 20;
const MAX_R = 16;
const MAX_P = 4;

const FORMAT = /^\$scrypt\$ln=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})$/;

/** The memory cap handed to Node: scrypt's 128·r·(N + p) bytes plus headroom (Node's default, 32 MiB, is exactly N = 2^15, r = 8, too tight). */
function maxmem(params: ScryptParams): number {
  return 128 * params.r * (2 ** params.ln + params.p) + 8 * 1024 * 1024;
}

function scrypt(password: string, salt: Buffer, params: ScryptParams, bytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scryptCb(
      password.normalize("NFC"),
      salt,
      bytes,
      { N: 2 ** params.ln, r: params.r, p: params.p, maxmem: maxmem(params) },
      (err, key) => (err ? reject(err) : resolve(key)),
    ),
  );
}

/** Hashes `password` with a fresh salt under `params` (the defaults unless given). */
export async function hashPassword(password: string, params: ScryptParams = SCRYPT_PARAMS): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const key = await scrypt(password, salt, params, KEY_BYTES);
  return `$scrypt$ln=${params.ln},r=${params.r},p=${params.p}$${salt.toString("base64")}$${key.toString("base64")}`;
}

/** The parameters and parts of a stored hash; throws NOVA_INTERNAL for one this code cannot read. */
export function parsePasswordHash(stored: string): { params: ScryptParams; salt: Buffer; key: Buffer } {
  const m = FORMAT.exec(stored);
  const params = m ? { ln: Number(m[1]), r: Number(m[2]), p: Number(m[3]) } : undefined;
  if (
    !m ||
    !params ||
    params.ln < 1 ||
    params.ln > MAX_LN ||
    params.r < 1 ||
    params.r > MAX_R ||
    params.p < 1 ||
    params.p > MAX_P
  ) {
    throw new NovaError(
      "NOVA_INTERNAL",
      "A stored password hash is not in a format this NovaCron reads; reset that user's password.",
    );
  }
  return { params, salt: Buffer.from(m[4]!, "base64"), key: Buffer.from(m[5]!, "base64") };
}

/** True when `password` matches `stored`; the comparison is constant-time. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const { params, salt, key } = parsePasswordHash(stored);
  const candidate = await scrypt(password, salt, params, key.length);
  return candidate.length === key.length && timingSafeEqual(candidate, key);
}

/** True when `stored` was made with weaker parameters than `current`: re-hash it at the next login. */
export function needsRehash(stored: string, current: ScryptParams = SCRYPT_PARAMS): boolean {
  const { params } = parsePasswordHash(stored);
  return params.ln < current.ln || params.r < current.r || params.p < current.p;
}

let decoy: Promise<string> | undefined;

/**
 * A hash of a random password, computed once: verifying against it when the username is
 * unknown costs what a real verification costs, so response times do not tell which
 * usernames exist.
 */
export function decoyHash(): Promise<string> {
  decoy ??= hashPassword(randomBytes(16).toString("base64"));
  return decoy;
}

/** Passwords shorter than this are refused. */
export const MIN_PASSWORD_LENGTH = 12;
/** Passwords longer than this are refused (bounds the hashing input). */
export const MAX_PASSWORD_LENGTH = 1024;

/** Throws NOVA_BAD_REQUEST for a password too short or too long to accept. */
export function assertAcceptablePassword(password: string): void {
  if (password.length < MIN_PASSWORD_LENGTH || password.length > MAX_PASSWORD_LENGTH)
    throw new NovaError(
      "NOVA_BAD_REQUEST",
      `A password must be ${MIN_PASSWORD_LENGTH} to ${MAX_PASSWORD_LENGTH} characters long (a passphrase of several words is easiest to remember).`,
      { details: { minLength: MIN_PASSWORD_LENGTH, maxLength: MAX_PASSWORD_LENGTH } },
    );
}

/** A random password for a new user or a reset: 24 base64url characters (144 bits). */
export function generatePassword(): string {
  return randomBytes(18).toString("base64url");
}
