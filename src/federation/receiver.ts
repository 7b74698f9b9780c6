/**
 * Applying a batch a peer sent (docs/federation.md §3, §5): every record is judged
 * (judge.ts) against what this cluster holds, the accepted ones are stored and the vector
 * advanced, all in one transaction, so a crash leaves either the whole batch or none of
 * it. A proven violation stores its evidence and quarantines the culprit in the same
 * transaction; when the sender is the culprit nothing else of the batch is kept.
 */
import type { KeyObject } from "node:crypto";
import type { AssBatch } from "../api/types/federation.js";
import { appendEvent } from "../cluster/store/events.js";
import {
  addEvidence,
  followPeerCard,
  liveOwners,
  putRecords,
  raiseOwnSeq,
  raiseVector,
  recordsByKeys,
  recordsByVersions,
  releasedVms,
  transitionPeer,
} from "../cluster/store/federation.js";
import type { Store } from "../cluster/store/store.js";
import { type JudgeFacts, judgeRecord, recordEpoch, type Verdict, type ViolationKind } from "./judge.js";
import { canonicalBody, type SignedRecord } from "./records.js";
import { advanceVector, type VersionVector } from "./version-vector.js";

/** What the receiver knows of the clusters it may accept records from. */
export interface Roster {
  self: string;
  /** Signing keys of us and of every active peer. */
  keys: Map<string, KeyObject>;
  /** Quarantined peers. */
  quarantined: Set<string>;
  /** Active peers in contact directly now (their own link answered recently). */
  direct: Set<string>;
}

/** A violation found in a batch. */
export interface Violation {
  culprit: string;
  kind: ViolationKind;
  detail: string;
}

/** What applying a batch did. */
export interface BatchOutcome {
  accepted: number;
  duplicates: number;
  stale: number;
  ignored: number;
  tooLarge: number;
  conflicts: number;
  violations: Violation[];
  /** The vector after the batch. */
  vector: VersionVector;
}

const NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** `host:port` (IPv6 in brackets) as a federation address, or nothing when malformed. */
export function parseFederationAddress(
  text: unknown,
): { fedHost: string; fedPort: number } | Record<string, never> {
  const m = typeof text === "string" ? /^(.{1,255}):(\d{1,5})$/.exec(text) : null;
  const port = m ? Number(m[2]) : 0;
  if (!m || port < 1 || port > 65535) return {};
  return { fedHost: m[1]!.replace(/^\[|\]$/g, ""), fedPort: port };
}

/** The name and federation address a cluster record states, where well-formed. */
export function cardOf(record: SignedRecord): { name?: string; fedHost?: string; fedPort?: number } {
  const b = record.body ?? {};
  return {
    ...(typeof b.name === "string" && NAME.test(b.name) ? { name: b.name } : {}),
    ...parseFederationAddress(b.federation),
  };
}

/** Applies `batch`, the answer of `sender` to a pull that asked with `asked`. */
export async function applyBatch(
  store: Store,
  roster: Roster,
  sender: string,
  asked: VersionVector,
  batch: AssBatch,
  onEvent: (v: Violation) => void = () => {},
): Promise<BatchOutcome> {
  const outcome: BatchOutcome = {
    accepted: 0,
    duplicates: 0,
    stale: 0,
    ignored: 0,
    tooLarge: 0,
    conflicts: 0,
    violations: [],
    vector: asked,
  };
  const records = batch.records as SignedRecord[];
  const raised = await store.write(async (tx, emit) => {
    const held = await recordsByKeys(tx, records);
    const atVersion = await recordsByVersions(tx, records);
    const owners = await liveOwners(tx, records);
    const released = await releasedVms(
      tx,
      records.filter((r) => r.kind === "vm").map((r) => r.id),
    );
    const culprits = new Set<string>();
    const accepted: { record: SignedRecord; bodyJson: string }[] = [];
    let ownSeq = 0;
    for (const r of records) {
      if (culprits.has(r.origin)) continue;
      const k = `${r.origin}/${r.kind}/${r.id}`;
      const others = (owners.get(`${r.kind}/${r.id}`) ?? []).filter((o) => o.origin !== r.origin);
      const other = others.find((o) => o.origin === roster.self) ?? others[0];
      const epoch = recordEpoch(r);
      const facts: JudgeFacts = {
        self: roster.self,
        sender,
        asked,
        originKey: roster.quarantined.has(r.origin) ? undefined : roster.keys.get(r.origin),
        originQuarantined: roster.quarantined.has(r.origin),
        held: held.get(k),
        atVersion: atVersion.get(`${r.origin}@${r.version}`),
        otherOwner: other?.origin,
        ...(other?.epoch !== undefined ? { otherEpoch: other.epoch } : {}),
        releasedToOrigin: (released.get(r.id) ?? []).some((x) => x.to === r.origin && x.epoch === epoch),
      };
      const verdict: Verdict = judgeRecord(r, facts);
      switch (verdict.kind) {
        case "accept":
          accepted.push({ record: r, bodyJson: canonicalBody(r.body) });
          held.set(k, r);
          atVersion.set(`${r.origin}@${r.version}`, r);
          if (!r.deleted)
            owners.set(`${r.kind}/${r.id}`, [
              ...(owners.get(`${r.kind}/${r.id}`) ?? []),
              { origin: r.origin, ...(epoch !== undefined ? { epoch } : {}) },
            ]);
          outcome.accepted++;
          break;
        case "duplicate":
          outcome.duplicates++;
          break;
        case "stale":
          outcome.stale++;
          break;
        case "own":
          ownSeq = Math.max(ownSeq, r.version);
          break;
        case "ignored":
          outcome.ignored++;
          break;
        case "too-large":
          outcome.tooLarge++;
          break;
        case "conflict":
          outcome.conflicts++;
          break;
        case "violation": {
          const v: Violation = { culprit: verdict.culprit, kind: verdict.violation, detail: verdict.detail };
          outcome.violations.push(v);
          culprits.add(verdict.culprit);
          await addEvidence(tx, {
            peerId: verdict.culprit,
            senderId: sender,
            kind: verdict.violation,
            detail: verdict.detail,
            records: verdict.evidence,
          });
          if (verdict.culprit !== roster.self && !roster.quarantined.has(verdict.culprit)) {
            await transitionPeer(tx, verdict.culprit, "active", "quarantined", {
              kind: verdict.violation,
              reason: verdict.detail,
            });
            emit(
              await appendEvent(tx, {
                type: "federation.peer.quarantined",
                resourceType: "peer",
                resourceId: verdict.culprit,
                data: { kind: verdict.violation, detail: verdict.detail, sender },
              }),
            );
          }
          break;
        }
      }
      if (culprits.has(sender)) break;
    }
    if (ownSeq > 0) await raiseOwnSeq(tx, ownSeq);
    if (culprits.has(sender)) {
      outcome.accepted = 0; // judged acceptable, but a lying sender's batch is dropped whole
      return asked;
    }
    // Counted as stored: a record another link stored in the meantime is not counted twice.
    outcome.accepted = await putRecords(tx, accepted);
    // A peer's own cluster record carries its name and federation address: follow them.
    for (const { record } of accepted) {
      if (record.kind === "cluster" && !record.deleted)
        await followPeerCard(tx, record.origin, cardOf(record));
    }
    const next = advanceVector(asked, batch.vector, records, batch.truncated);
    for (const c of culprits) if (c in next) next[c] = asked[c] ?? 0;
    const up: VersionVector = {};
    for (const [o, v] of Object.entries(next)) if (o !== roster.self && v > (asked[o] ?? 0)) up[o] = v;
    await raiseVector(tx, up);
    return next;
  });
  outcome.vector = raised;
  for (const v of outcome.violations) onEvent(v);
  return outcome;
}
