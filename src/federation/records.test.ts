import { describe, expect, it } from "vitest";
import { NovaError } from "../lib/errors.js";
import {
  canonicalBody,
  newSigningIdentity,
  privateKeyOf,
  publicKeyFromRaw,
  publicKeyOfPrivate,
  recordDigest,
  signingKeyFingerprint,
  signRecord,
  verifyRecord,
} from "./records.js";

const content = {
  origin: "00000000-0000-4000-8000-00000000000a",
  kind: "vm" as const,
  id: "x",
  version: 1,
  deleted: false,
  body: { b: 1, a: [1, 2] },
  issuedAt: "2026-12-06T10:00:00.000Z",
};

describe("records", () => {
  it("signs and verifies; any change breaks the signature", () => {
    const id = newSigningIdentity();
    const r = signRecord(content, privateKeyOf(id));
    const pub = publicKeyFromRaw(id.publicKey);
    expect(verifyRecord(r, pub)).toBe(true);
    expect(verifyRecord({ ...r, version: 2 }, pub)).toBe(false);
    expect(verifyRecord({ ...r, body: { b: 2, a: [1, 2] } }, pub)).toBe(false);
    expect(verifyRecord(r, publicKeyFromRaw(newSigningIdentity().publicKey))).toBe(false);
  });

  it("does not depend on key order (canonical JSON)", () => {
    const id = newSigningIdentity();
    const a = signRecord(content, privateKeyOf(id));
    const b = signRecord({ ...content, body: { a: [1, 2], b: 1 } }, privateKeyOf(id));
    expect(a.sig).toBe(b.sig);
    expect(recordDigest(a)).toBe(recordDigest(b));
    expect(canonicalBody({ b: 1, a: 2 })).toBe('{"a":2,"b":1}');
  });

  it("round-trips the public key and names a fingerprint", () => {
    const id = newSigningIdentity();
    expect(publicKeyOfPrivate(id.privateKeyPem)).toBe(id.publicKey);
    expect(signingKeyFingerprint(id.publicKey)).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(() => publicKeyFromRaw("AAAA")).toThrow(NovaError);
  });

  it("refuses to sign a record over the limit", () => {
    const id = newSigningIdentity();
    expect(() => signRecord({ ...content, body: { x: "y".repeat(70_000) } }, privateKeyOf(id))).toThrow(
      expect.objectContaining({ code: "NOVA_FED_RECORD_TOO_LARGE" }),
    );
  });
});
