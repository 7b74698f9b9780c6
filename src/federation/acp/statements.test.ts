import { describe, expect, it } from "vitest";
import { newSigningIdentity, privateKeyOf, publicKeyFromRaw } from "../records.js";
import {
  contradicts,
  type StatementContent,
  signerOf,
  signStatement,
  verifyStatement,
} from "./statements.js";

const S = "00000000-0000-4000-8000-00000000000a";
const D = "00000000-0000-4000-8000-00000000000b";
const H = "00000000-0000-4000-8000-0000000000c1";
const V = "00000000-0000-4000-8000-0000000000d1";
const content = (over: Partial<StatementContent> = {}): StatementContent => ({
  kind: "release",
  handoff: H,
  vm: V,
  source: S,
  target: D,
  epoch: 2,
  issuedAt: "2026-12-06T00:00:00Z",
  ...over,
});

describe("ACP statements", () => {
  const id = newSigningIdentity();
  const key = privateKeyOf(id);
  const pub = publicKeyFromRaw(id.publicKey);

  it("verify under the signer's key only, and not once any field changed", () => {
    const s = signStatement(content({ detail: { host: "h1" } }), key);
    expect(verifyStatement(s, pub)).toBe(true);
    expect(verifyStatement(s, publicKeyFromRaw(newSigningIdentity().publicKey))).toBe(false);
    expect(verifyStatement({ ...s, epoch: 3 }, pub)).toBe(false);
    expect(verifyStatement({ ...s, kind: "abort" }, pub)).toBe(false);
    expect(verifyStatement({ ...s, detail: { host: "h2" } }, pub)).toBe(false);
    expect(verifyStatement({ ...s, sig: "AAAA" }, pub)).toBe(false);
    // Key order does not matter: the signature covers canonical JSON.
    const { sig, detail, ...rest } = s;
    const reordered = JSON.parse(JSON.stringify({ sig, detail, ...rest }));
    expect(Object.keys(reordered)[0]).toBe("sig");
    expect(verifyStatement(reordered, pub)).toBe(true);
  });

  it("refuses to sign past the size limit", () => {
    expect(() => signStatement(content({ detail: { blob: "x".repeat(70_000) } }), key)).toThrow(
      expect.objectContaining({ code: "NOVA_ACP_PROTOCOL" }),
    );
  });

  it("name the source as signer of prepare, release and abort, the destination of the rest", () => {
    for (const kind of ["prepare", "release", "abort"] as const) expect(signerOf(content({ kind }))).toBe(S);
    for (const kind of ["prepared", "owned", "returned", "aborted"] as const)
      expect(signerOf(content({ kind }))).toBe(D);
  });

  it("contradict exactly when one signer says two incompatible things about one hand-off", () => {
    expect(contradicts(content({ kind: "release" }), content({ kind: "abort" }))).toBe(true);
    expect(contradicts(content({ kind: "owned" }), content({ kind: "returned", epoch: 3 }))).toBe(true);
    expect(contradicts(content({ kind: "owned" }), content({ kind: "aborted" }))).toBe(true);
    expect(contradicts(content({ kind: "release" }), content({ kind: "release", epoch: 3 }))).toBe(true);
    expect(contradicts(content({ kind: "release" }), content({ kind: "release", issuedAt: "later" }))).toBe(
      false,
    );
    expect(contradicts(content({ kind: "prepare" }), content({ kind: "release" }))).toBe(false);
    expect(contradicts(content({ kind: "prepare" }), content({ kind: "abort" }))).toBe(false);
    expect(contradicts(content({ kind: "release" }), content({ kind: "abort", handoff: V }))).toBe(false);
  });
});
