import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AssBatch } from "../api/types/federation.js";
import {
  insertPeer,
  listEvidence,
  listPeers,
  readClusterIdentity,
  readVector,
  recordsByKeys,
} from "../cluster/store/federation.js";
import { Store } from "../cluster/store/store.js";
import { applyBatch, cardOf, parseFederationAddress, type Roster } from "./receiver.js";
import {
  newSigningIdentity,
  privateKeyOf,
  publicKeyFromRaw,
  type RecordContent,
  signRecord,
} from "./records.js";

const SELF = "00000000-0000-4000-8000-000000000001";
const A = "00000000-0000-4000-8000-00000000000a";
const B = "00000000-0000-4000-8000-00000000000b";
const ids: Record<string, ReturnType<typeof newSigningIdentity>> = {
  [SELF]: newSigningIdentity(),
  [A]: newSigningIdentity(),
  [B]: newSigningIdentity(),
};

function rec(origin: string, id: string, version: number, body: Record<string, unknown> = { name: id }) {
  const c: RecordContent = { origin, kind: "vm", id, version, deleted: false, body, issuedAt: "t" };
  return signRecord(c, privateKeyOf(ids[origin]!));
}

function batch(records: AssBatch["records"], vector: Record<string, number>, truncated = false): AssBatch {
  return { type: "batch", vector, seq: 0, records, truncated, now: "t" };
}

describe("applyBatch (on an in-memory PGlite)", () => {
  let store: Store;
  const roster = (): Roster => ({
    self: SELF,
    keys: new Map([SELF, A, B].map((o) => [o, publicKeyFromRaw(ids[o]!.publicKey)])),
    quarantined: new Set(),
    direct: new Set(),
  });

  beforeAll(async () => {
    store = await Store.open({ memory: true });
    await store.db.query(
      "INSERT INTO cluster_info (id, name, signing_key_pem, signing_public_key) VALUES ($1, 'self', 'k', 'k')",
      [SELF],
    );
    for (const [id, name] of [
      [A, "a"],
      [B, "b"],
    ] as const) {
      await insertPeer(store.db, {
        id,
        name,
        apiUrl: "https://x:1",
        fedHost: "x",
        fedPort: 1,
        caPem: "p",
        caFingerprint: "f",
        signingPublicKey: ids[id]!.publicKey,
        protocol: 1,
      });
    }
  });
  afterAll(() => store.close());

  it("stores what it accepts and advances the vector to the sender's", async () => {
    const out = await applyBatch(
      store,
      roster(),
      A,
      { [A]: 0, [B]: 0 },
      batch([rec(A, "x", 1), rec(A, "y", 2)], { [A]: 2, [B]: 0 }),
    );
    expect(out.accepted).toBe(2);
    expect(await readVector(store.read)).toMatchObject({ [A]: 2 });
  });

  it("keeps records relayed from a third origin and stops the vector at a cut", async () => {
    const out = await applyBatch(
      store,
      roster(),
      A,
      { [A]: 2, [B]: 0 },
      batch([rec(A, "z", 3), rec(B, "w", 5)], { [A]: 9, [B]: 7 }, true),
    );
    expect(out.accepted).toBe(2);
    expect(await readVector(store.read)).toMatchObject({ [A]: 9, [B]: 5 });
  });

  it("keeps nothing of a batch whose sender lies, and quarantines it with the evidence", async () => {
    const forged = { ...rec(A, "v", 10), body: { name: "forged" } };
    const out = await applyBatch(
      store,
      roster(),
      A,
      { [A]: 9, [B]: 5 },
      batch([rec(A, "u", 10), forged], { [A]: 10 }),
    );
    expect(out.violations.map((v) => [v.kind, v.culprit])).toEqual([["bad-signature", A]]);
    expect(out.accepted).toBe(0);
    expect(await readVector(store.read)).toMatchObject({ [A]: 9 });
    expect(await recordsByKeys(store.read, [{ origin: A, kind: "vm", id: "u" }])).toEqual(new Map());
    expect((await listPeers(store.read)).find((p) => p.id === A)?.state).toBe("quarantined");
    expect((await listEvidence(store.read, A))[0]?.records).toEqual([forged]);
  });

  it("raises its own sequence past its own records coming back", async () => {
    await applyBatch(
      store,
      { ...roster(), quarantined: new Set([A]) },
      B,
      { [B]: 5 },
      batch([rec(SELF, "mine", 42)], { [B]: 5 }),
    );
    expect((await readClusterIdentity(store.read)).seq).toBe(42);
  });

  it("reads a cluster record's name and address only when well-formed", () => {
    const c = (body: Record<string, unknown>) => cardOf({ ...rec(A, A, 1, body), kind: "cluster" });
    expect(c({ name: "east", federation: "10.0.0.1:7701" })).toEqual({
      name: "east",
      fedHost: "10.0.0.1",
      fedPort: 7701,
    });
    expect(c({ name: "Bad Name!", federation: "[::1]:7701" })).toEqual({ fedHost: "::1", fedPort: 7701 });
    expect(c({ federation: "host:99999" })).toEqual({});
    expect(parseFederationAddress(12)).toEqual({});
  });
});
