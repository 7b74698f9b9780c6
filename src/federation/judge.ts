/**
 * The Byzantine judge (docs/federation.md §5): what to do with one record a peer sent,
 * decided from the record and what the receiver already holds. Pure; the sync client
 * loads the facts, applies the verdict and stores the evidence.
 *
 * Who is to blame: a bad signature or a replay is the sender's doing (it sends only what
 * it checked and what was asked for), equivocation and a false claim are the origin's
 * (its own signature proves it).
 */
import type { KeyObject } from "node:crypto";
import { MAX_RECORD_BYTES, recordDigest, recordSize, type SignedRecord, verifyRecord } from "./records.js";
import type { VersionVector } from "./version-vector.js";

/** The kinds of misbehaviour that quarantine a peer. */
export const VIOLATION_KINDS = ["equivocation", "bad-signature", "replay", "not-owner"] as const;
export type ViolationKind = (typeof VIOLATION_KINDS)[number];

/** A judge's decision. */
export type Verdict =
  /** New: store it. */
  | { kind: "accept" }
  /** The same record again: nothing to do. */
  | { kind: "duplicate" }
  /** Older than the one held, but newer than the vector asked: a benign race of two sources. */
  | { kind: "stale" }
  /** Our own record coming back: never stored, but our sequence must pass `version`. */
  | { kind: "own" }
  /** Its origin is no peer of ours (or is removed, or quarantined): we cannot or will not check it. */
  | { kind: "ignored"; reason: "unknown-origin" | "quarantined-origin" }
  /** Over MAX_RECORD_BYTES: refused, the sender is not punished (a limit, not a lie). */
  | { kind: "too-large"; bytes: number }
  /** Another peer (not us) owns this key: refused until ownership is settled (next issue's ACP). */
  | { kind: "conflict"; owner: string }
  | {
      kind: "violation";
      violation: ViolationKind;
      /** The cluster to quarantine. */
      culprit: string;
      detail: string;
      /** The signed records that prove it (one for a bad signature or a replay, two else). */
      evidence: SignedRecord[];
    };

/** What the receiver knows that bears on one record. */
export interface JudgeFacts {
  self: string;
  /** The peer the record came from (the session's authenticated cluster). */
  sender: string;
  /** The vector this side sent in the pull being answered. */
  asked: VersionVector;
  /** The origin's signing key if the origin is us or an active peer. */
  originKey: KeyObject | undefined;
  /** The origin is a quarantined peer. */
  originQuarantined: boolean;
  /** The record we hold for the same origin and key, if any. */
  held: SignedRecord | undefined;
  /** A record we hold from the same origin at the same version, if any (any key). */
  atVersion: SignedRecord | undefined;
  /** The origin of another live (not deleted) record for the same kind and id, if any. */
  otherOwner: string | undefined;
  /** The owner epoch that other record states (VMs, docs/federation.md §10). */
  otherEpoch?: number;
  /** This cluster released the VM to the record's origin at the record's epoch (ACP). */
  releasedToOrigin?: boolean;
}

/** The owner epoch a VM record states, if it is one that does. */
export function recordEpoch(record: Pick<SignedRecord, "kind" | "body">): number | undefined {
  const e = record.kind === "vm" ? record.body?.epoch : undefined;
  return typeof e === "number" && Number.isInteger(e) && e > 0 ? e : undefined;
}

/** Judges one record. */
export function judgeRecord(record: SignedRecord, f: JudgeFacts): Verdict {
  const bytes = recordSize(record);
  if (bytes > MAX_RECORD_BYTES) return { kind: "too-large", bytes };
  if (f.originQuarantined) return { kind: "ignored", reason: "quarantined-origin" };
  if (!f.originKey) return { kind: "ignored", reason: "unknown-origin" };
  if (!verifyRecord(record, f.originKey)) {
    return {
      kind: "violation",
      violation: "bad-signature",
      culprit: f.sender,
      detail: `${record.kind} ${record.id} version ${record.version} of ${record.origin} does not carry ${record.origin}'s signature`,
      evidence: [record],
    };
  }
  if (record.origin === f.self) return { kind: "own" };
  if (record.kind === "cluster" && record.id !== record.origin) {
    return {
      kind: "violation",
      violation: "not-owner",
      culprit: record.origin,
      detail: `${record.origin} signed a cluster record for another cluster (${record.id})`,
      evidence: [record],
    };
  }
  const digest = recordDigest(record);
  if (f.atVersion && recordDigest(f.atVersion) !== digest) {
    return {
      kind: "violation",
      violation: "equivocation",
      culprit: record.origin,
      detail: `${record.origin} signed two different records with version ${record.version}`,
      evidence: [f.atVersion, record],
    };
  }
  if (f.held && f.held.version === record.version && recordDigest(f.held) !== digest) {
    return {
      kind: "violation",
      violation: "equivocation",
      culprit: record.origin,
      detail: `${record.origin} signed two different versions ${record.version} of ${record.kind} ${record.id}`,
      evidence: [f.held, record],
    };
  }
  if (!record.deleted && f.otherOwner && f.otherOwner !== record.origin) {
    // A VM moves between clusters by ACP, each owner at a higher epoch: a record of an
    // earlier owner is superseded, one of a later owner supersedes — a later owner of a VM
    // this cluster holds only if this cluster released it to that one at that epoch.
    const epoch = recordEpoch(record);
    const moved = epoch !== undefined && f.otherEpoch !== undefined;
    if (moved && epoch < f.otherEpoch!) return { kind: "stale" };
    const supersedes =
      moved && epoch > f.otherEpoch! && (f.otherOwner !== f.self || f.releasedToOrigin === true);
    if (!supersedes && f.otherOwner === f.self) {
      return {
        kind: "violation",
        violation: "not-owner",
        culprit: record.origin,
        detail: `${record.origin} claims ${record.kind} ${record.id}, which this cluster owns`,
        evidence: [record],
      };
    }
    if (!supersedes) return { kind: "conflict", owner: f.otherOwner };
  }
  if (f.held && recordDigest(f.held) === digest) return { kind: "duplicate" };
  if (record.version <= (f.asked[record.origin] ?? 0)) {
    return {
      kind: "violation",
      violation: "replay",
      culprit: f.sender,
      detail: `${f.sender} sent version ${record.version} of ${record.origin}'s ${record.kind} ${record.id} although this cluster had asked only for versions after ${f.asked[record.origin] ?? 0}`,
      evidence: f.held ? [f.held, record] : [record],
    };
  }
  if (f.held && f.held.version > record.version) return { kind: "stale" };
  return { kind: "accept" };
}
