/**
 * ACP statements (docs/federation.md §10): each step of a hand-off is a statement signed
 * by the cluster that takes it, so that either side can show the other — or an operator —
 * what was agreed, and two statements that contradict each other are proof of
 * equivocation. The signature covers the RFC 8785 canonical JSON of everything but the
 * signature, behind a domain prefix of its own (a statement can never pass for an ASS
 * record, nor the reverse).
 */
import { type KeyObject, sign, verify } from "node:crypto";
import canonicalize from "canonicalize";
import {
  MAX_STATEMENT_BYTES,
  type SignedStatement,
  SOURCE_STATEMENTS,
  type StatementKind,
} from "../../api/types/acp.js";
import { NovaError } from "../../lib/errors.js";

/** A statement before signing. */
export type StatementContent = Omit<SignedStatement, "sig">;

const DOMAIN = "novacron-acp-statement-v1\n";

function contentOf(s: StatementContent): StatementContent {
  return {
    kind: s.kind,
    handoff: s.handoff,
    vm: s.vm,
    source: s.source,
    target: s.target,
    epoch: s.epoch,
    issuedAt: s.issuedAt,
    ...(s.detail === undefined ? {} : { detail: s.detail }),
  };
}

function signingBytes(s: StatementContent): Buffer {
  return Buffer.from(DOMAIN + canonicalize(contentOf(s)), "utf8");
}

/** The cluster that signs a statement of this kind. */
export function signerOf(s: Pick<StatementContent, "kind" | "source" | "target">): string {
  return SOURCE_STATEMENTS.includes(s.kind) ? s.source : s.target;
}

/** Signs `content`; NOVA_ACP_PROTOCOL when it exceeds the statement size limit. */
export function signStatement(content: StatementContent, key: KeyObject): SignedStatement {
  const statement = { ...contentOf(content), sig: sign(null, signingBytes(content), key).toString("base64") };
  const size = Buffer.byteLength(canonicalize(statement) ?? "", "utf8");
  if (size > MAX_STATEMENT_BYTES)
    throw new NovaError(
      "NOVA_ACP_PROTOCOL",
      `The ${content.kind} statement of hand-off ${content.handoff} is ${size} bytes; at most ${MAX_STATEMENT_BYTES} are allowed`,
    );
  return statement;
}

/** Whether `s` is signed by the holder of `key`. Malformed signatures are false. */
export function verifyStatement(s: SignedStatement, key: KeyObject): boolean {
  try {
    const sig = Buffer.from(s.sig, "base64");
    return sig.length === 64 && verify(null, signingBytes(s), key, sig);
  } catch {
    return false;
  }
}

/**
 * The statement kinds one signer may never both make for one hand-off: the source cannot
 * release and abort; the destination cannot own and give back, nor drop a copy it owns.
 */
const CONTRADICTIONS: readonly (readonly [StatementKind, StatementKind])[] = [
  ["release", "abort"],
  ["owned", "returned"],
  ["owned", "aborted"],
  ["returned", "aborted"],
];

/** True when `a` and `b` (same hand-off, same signer) cannot both be true. */
export function contradicts(a: StatementContent, b: StatementContent): boolean {
  if (a.handoff !== b.handoff) return false;
  if (a.kind === b.kind)
    return a.epoch !== b.epoch || a.vm !== b.vm || a.source !== b.source || a.target !== b.target;
  return CONTRADICTIONS.some(([x, y]) => (a.kind === x && b.kind === y) || (a.kind === y && b.kind === x));
}
