import { describe, expect, it } from "vitest";
import { type JudgeFacts, judgeRecord } from "./judge.js";
import {
  MAX_RECORD_BYTES,
  newSigningIdentity,
  privateKeyOf,
  publicKeyFromRaw,
  type RecordContent,
  type SignedRecord,
  signRecord,
} from "./records.js";

const SELF = "00000000-0000-4000-8000-000000000001";
const A = "00000000-0000-4000-8000-00000000000a";
const B = "00000000-0000-4000-8000-00000000000b";
const idA = newSigningIdentity();
const idB = newSigningIdentity();
const idSelf = newSigningIdentity();
const keyA = privateKeyOf(idA);

function rec(over: Partial<RecordContent> = {}, key = keyA): SignedRecord {
  return signRecord(
    {
      origin: A,
      kind: "vm",
      id: "vm-1",
      version: 5,
      deleted: false,
      body: { name: "web", state: "running" },
      issuedAt: "2026-12-06T10:00:00.000Z",
      ...over,
    },
    key,
  );
}

function facts(over: Partial<JudgeFacts> = {}): JudgeFacts {
  return {
    self: SELF,
    sender: A,
    asked: { [A]: 2 },
    originKey: publicKeyFromRaw(idA.publicKey),
    originQuarantined: false,
    held: undefined,
    atVersion: undefined,
    otherOwner: undefined,
    ...over,
  };
}

describe("judgeRecord", () => {
  it("accepts a new, well-signed record", () => {
    expect(judgeRecord(rec(), facts())).toEqual({ kind: "accept" });
  });

  it("accepts a newer version of a held record", () => {
    expect(judgeRecord(rec({ version: 6 }), facts({ held: rec() }))).toEqual({ kind: "accept" });
  });

  it("calls the same record again a duplicate", () => {
    expect(judgeRecord(rec(), facts({ held: rec(), atVersion: rec() })).kind).toBe("duplicate");
  });

  it("ignores records of unknown or quarantined origins", () => {
    expect(judgeRecord(rec(), facts({ originKey: undefined }))).toEqual({
      kind: "ignored",
      reason: "unknown-origin",
    });
    expect(judgeRecord(rec(), facts({ originQuarantined: true }))).toEqual({
      kind: "ignored",
      reason: "quarantined-origin",
    });
  });

  it("blames the sender for a bad signature", () => {
    const forged = { ...rec(), body: { name: "web", state: "stopped" } };
    const v = judgeRecord(forged, facts({ sender: B }));
    expect(v).toMatchObject({ kind: "violation", violation: "bad-signature", culprit: B });
  });

  it("blames the sender for a record signed by someone else than its origin", () => {
    const v = judgeRecord(rec({}, privateKeyOf(idB)), facts());
    expect(v).toMatchObject({ kind: "violation", violation: "bad-signature", culprit: A });
  });

  it("treats a garbage signature as bad, not as an exception", () => {
    const v = judgeRecord({ ...rec(), sig: "not base64!" }, facts());
    expect(v).toMatchObject({ kind: "violation", violation: "bad-signature" });
  });

  it("proves equivocation on the same key and version, with both records", () => {
    const first = rec();
    const second = rec({ body: { name: "web", state: "stopped" } });
    const v = judgeRecord(second, facts({ held: first, atVersion: first, sender: B }));
    expect(v).toMatchObject({ kind: "violation", violation: "equivocation", culprit: A });
    expect(v.kind === "violation" && v.evidence).toEqual([first, second]);
  });

  it("proves equivocation on one version used for two keys", () => {
    const first = rec({ id: "vm-2" });
    const v = judgeRecord(rec(), facts({ atVersion: first }));
    expect(v).toMatchObject({ kind: "violation", violation: "equivocation", culprit: A });
  });

  it("calls an old version the sender was told we had a replay", () => {
    const newer = rec({ version: 9, body: { name: "web", state: "stopped" } });
    const v = judgeRecord(rec({ version: 5 }), facts({ held: newer, asked: { [A]: 9 }, sender: B }));
    expect(v).toMatchObject({ kind: "violation", violation: "replay", culprit: B });
  });

  it("lets an older version newer than what was asked pass as stale (two sources racing)", () => {
    const newer = rec({ version: 9, body: { name: "web", state: "stopped" } });
    expect(judgeRecord(rec({ version: 5 }), facts({ held: newer, asked: { [A]: 4 } }))).toEqual({
      kind: "stale",
    });
  });

  it("finds a claim on what this cluster owns", () => {
    const v = judgeRecord(rec(), facts({ otherOwner: SELF }));
    expect(v).toMatchObject({ kind: "violation", violation: "not-owner", culprit: A });
  });

  it("finds a cluster record about another cluster", () => {
    const v = judgeRecord(rec({ kind: "cluster", id: B }), facts());
    expect(v).toMatchObject({ kind: "violation", violation: "not-owner", culprit: A });
  });

  it("holds back a claim on what a third cluster owns as a conflict", () => {
    expect(judgeRecord(rec(), facts({ otherOwner: B }))).toEqual({ kind: "conflict", owner: B });
  });

  describe("a VM that moved between clusters (ACP epochs)", () => {
    const at = (epoch: number) => rec({ body: { name: "web", state: "running", epoch } });

    it("takes a later owner's record over a third cluster's earlier one", () => {
      expect(judgeRecord(at(3), facts({ otherOwner: B, otherEpoch: 2 })).kind).toBe("accept");
    });

    it("drops an earlier owner's record as superseded, ours or a third cluster's", () => {
      expect(judgeRecord(at(1), facts({ otherOwner: B, otherEpoch: 2 }))).toEqual({ kind: "stale" });
      expect(judgeRecord(at(1), facts({ otherOwner: SELF, otherEpoch: 2 }))).toEqual({ kind: "stale" });
    });

    it("takes a later owner's record of a VM this cluster held only if it released it there", () => {
      expect(
        judgeRecord(at(2), facts({ otherOwner: SELF, otherEpoch: 1, releasedToOrigin: true })).kind,
      ).toBe("accept");
      expect(
        judgeRecord(at(2), facts({ otherOwner: SELF, otherEpoch: 1, releasedToOrigin: false })),
      ).toMatchObject({
        kind: "violation",
        violation: "not-owner",
        culprit: A,
      });
    });

    it("sees two owners at one epoch as a conflict, or a claim on ours", () => {
      expect(judgeRecord(at(2), facts({ otherOwner: B, otherEpoch: 2 }))).toEqual({
        kind: "conflict",
        owner: B,
      });
      expect(
        judgeRecord(at(2), facts({ otherOwner: SELF, otherEpoch: 2, releasedToOrigin: true })),
      ).toMatchObject({
        kind: "violation",
        violation: "not-owner",
      });
    });

    it("ignores an epoch that is not a positive integer", () => {
      const odd = rec({ body: { name: "web", epoch: "9" } });
      expect(judgeRecord(odd, facts({ otherOwner: B, otherEpoch: 2 }))).toEqual({
        kind: "conflict",
        owner: B,
      });
    });
  });

  it("lets a tombstone through even where another cluster owns the id", () => {
    expect(judgeRecord(rec({ deleted: true, body: null }), facts({ otherOwner: B })).kind).toBe("accept");
  });

  it("recognises our own records", () => {
    const own = signRecord({ ...rec(), origin: SELF }, privateKeyOf(idSelf));
    expect(judgeRecord(own, facts({ originKey: publicKeyFromRaw(idSelf.publicKey) }))).toEqual({
      kind: "own",
    });
  });

  it("refuses a record over the size limit without blaming anyone", () => {
    const big = { ...rec(), body: { blob: "x".repeat(MAX_RECORD_BYTES) } };
    expect(judgeRecord(big, facts()).kind).toBe("too-large");
  });
});
