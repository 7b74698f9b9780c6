/**
 * ASS records (docs/federation.md §2): what a cluster publishes about what it owns, signed
 * with its ed25519 key. A record names its origin (the owning cluster), a key (kind + id)
 * and a version: the origin's own sequence number, unique across all of its records. The
 * signature covers the RFC 8785 canonical JSON of everything but the signature, so any
 * cluster can check a record it got from a third, and two records with the same origin
 * and version but other content are proof of equivocation.
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
  verify,
} from "node:crypto";
import canonicalize from "canonicalize";
import type { SignedRecordWire } from "../api/types/federation.js";
import { NovaError } from "../lib/errors.js";

/** What a record can describe. `cluster` is the origin's own summary (id = origin). */
export const RECORD_KINDS = ["cluster", "host", "vm", "image"] as const;
export type RecordKind = (typeof RECORD_KINDS)[number];

/** The largest record accepted or published: its canonical JSON, signature included. */
export const MAX_RECORD_BYTES = 64 * 1024;

/** A record before signing. */
export interface RecordContent {
  origin: string;
  kind: RecordKind;
  id: string;
  /** The origin's sequence number for this write (≥ 1). */
  version: number;
  /** A tombstone: the thing was deleted; body is null. */
  deleted: boolean;
  body: Record<string, unknown> | null;
  /** When the origin wrote it, by its own clock: shown to people, never compared. */
  issuedAt: string;
}

/** A published record: content plus the origin's signature (base64); the wire type. */
export type SignedRecord = SignedRecordWire;

const DOMAIN = "novacron-ass-record-v1\n";

function contentOf(r: RecordContent): RecordContent {
  return {
    origin: r.origin,
    kind: r.kind,
    id: r.id,
    version: r.version,
    deleted: r.deleted,
    body: r.body,
    issuedAt: r.issuedAt,
  };
}

/** The bytes a signature covers: a domain prefix and the canonical JSON of the content. */
export function signingBytes(r: RecordContent): Buffer {
  return Buffer.from(DOMAIN + canonicalize(contentOf(r)), "utf8");
}

/** SHA-256 of the signed content, hex: equal digests mean equal records. */
export function recordDigest(r: RecordContent): string {
  return createHash("sha256").update(signingBytes(r)).digest("hex");
}

/** Bytes of the record as it travels (canonical JSON with the signature). */
export function recordSize(r: SignedRecord): number {
  return Buffer.byteLength(canonicalize(r) ?? "", "utf8");
}

/** Canonical JSON of a body, for comparing a body with the one last published. */
export function canonicalBody(body: Record<string, unknown> | null): string {
  return canonicalize(body) ?? "null";
}

/** Signs `content` with the origin's private key; NOVA_FED_RECORD_TOO_LARGE past the limit. */
export function signRecord(content: RecordContent, key: KeyObject): SignedRecord {
  const record = { ...contentOf(content), sig: sign(null, signingBytes(content), key).toString("base64") };
  const size = recordSize(record);
  if (size > MAX_RECORD_BYTES) {
    throw new NovaError(
      "NOVA_FED_RECORD_TOO_LARGE",
      `The ${content.kind} record ${content.id} is ${size} bytes; federation records may be at most ${MAX_RECORD_BYTES} bytes. Shorten what it carries (labels, names).`,
      { details: { kind: content.kind, id: content.id, bytes: size, limitBytes: MAX_RECORD_BYTES } },
    );
  }
  return record;
}

/** Whether `record`'s signature is the holder of `key`'s. Malformed signatures are false. */
export function verifyRecord(record: SignedRecord, key: KeyObject): boolean {
  try {
    const sig = Buffer.from(record.sig, "base64");
    if (sig.length !== 64) return false;
    return verify(null, signingBytes(record), key, sig);
  } catch {
    return false;
  }
}

/** A cluster's signing identity: the private key (PKCS#8 PEM) and the raw public key (base64). */
export interface SigningIdentity {
  privateKeyPem: string;
  publicKey: string;
}

/** A fresh ed25519 identity. */
export function newSigningIdentity(): SigningIdentity {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return {
    privateKeyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    publicKey: rawPublicKey(publicKey),
  };
}

/** The private key of an identity. */
export function privateKeyOf(identity: Pick<SigningIdentity, "privateKeyPem">): KeyObject {
  return createPrivateKey(identity.privateKeyPem);
}

/** The 32 raw bytes of an ed25519 public key, base64. */
export function rawPublicKey(key: KeyObject): string {
  const jwk = key.export({ format: "jwk" });
  return Buffer.from(jwk.x ?? "", "base64url").toString("base64");
}

/** The public key of an identity's private key, raw base64. */
export function publicKeyOfPrivate(privateKeyPem: string): string {
  return rawPublicKey(createPublicKey(createPrivateKey(privateKeyPem)));
}

/** A public key from its raw base64 form; NOVA_BAD_REQUEST when it is not 32 bytes. */
export function publicKeyFromRaw(raw: string): KeyObject {
  const bytes = Buffer.from(raw, "base64");
  if (bytes.length !== 32) {
    throw new NovaError(
      "NOVA_BAD_REQUEST",
      "A cluster signing key is 32 bytes of ed25519 public key, base64",
    );
  }
  return createPublicKey({
    key: { kty: "OKP", crv: "Ed25519", x: bytes.toString("base64url") },
    format: "jwk",
  });
}

/** `sha256:` + hex of the raw public key: what people compare. */
export function signingKeyFingerprint(raw: string): string {
  return `sha256:${createHash("sha256").update(Buffer.from(raw, "base64")).digest("hex")}`;
}
