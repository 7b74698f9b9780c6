// The federation's tables on PostgreSQL and PGlite: identity and sequence, records (a newer
// version wins, an older one never replaces it), the pull query's order and restriction,
// the vector never lowered, peers moved only by compare-and-set, one-time tokens, evidence.
import { describe, expect, it } from "vitest";
import {
  addEvidence,
  checkPeeringToken,
  claimClusterIdentity,
  createPeeringToken,
  getLivePeer,
  insertPeer,
  listEvidence,
  liveOwners,
  putRecords,
  raiseVector,
  readVector,
  recordsByKeys,
  recordsByVersions,
  recordsSince,
  takeVersions,
  transitionPeer,
  useToken,
} from "../src/cluster/store/federation.js";
import type { Store } from "../src/cluster/store/store.js";
import {
  newSigningIdentity,
  privateKeyOf,
  type SignedRecord,
  signRecord,
} from "../src/federation/records.js";
import { ENGINES, storePerSuite } from "./helpers/databases.js";

const O1 = "00000000-0000-4000-8000-000000000001";
const O2 = "00000000-0000-4000-8000-000000000002";
const key = privateKeyOf(newSigningIdentity());

function rec(
  origin: string,
  id: string,
  version: number,
  state = "running",
): { record: SignedRecord; bodyJson: string } {
  const record = signRecord(
    { origin, kind: "vm", id, version, deleted: false, body: { name: id, state }, issuedAt: "t" },
    key,
  );
  return { record, bodyJson: JSON.stringify(record.body) };
}

describe.each(ENGINES)("federation store on $engine", ({ create }) => {
  let store!: Store;
  storePerSuite(create, (s) => {
    store = s;
  });

  it("claims one identity, keeps it, renames on request, and hands out versions in order", async () => {
    const fresh = () => ({ name: "first", ...newSigningIdentity() });
    const a = await store.write((tx) => claimClusterIdentity(tx, undefined, fresh));
    const b = await store.write((tx) => claimClusterIdentity(tx, "renamed", fresh));
    expect(b.id).toBe(a.id);
    expect(b.signingPublicKey).toBe(a.signingPublicKey);
    expect([a.name, b.name]).toEqual(["first", "renamed"]);
    expect(await store.write((tx) => takeVersions(tx, 3))).toBe(1);
    expect(await store.write((tx) => takeVersions(tx, 1))).toBe(4);
  });

  it("keeps the newest version of a key and answers pulls in (origin, version) order", async () => {
    await store.write((tx) =>
      putRecords(tx, [rec(O2, "b", 3), rec(O1, "a", 5), rec(O1, "a", 2), rec(O1, "c", 7)]),
    );
    await store.write((tx) => putRecords(tx, [rec(O1, "a", 4, "stopped")])); // older: ignored
    const held = await recordsByKeys(store.read, [{ origin: O1, kind: "vm", id: "a" }]);
    expect(held.get(`${O1}/vm/a`)?.version).toBe(5);
    expect(held.get(`${O1}/vm/a`)?.body).toEqual({ name: "a", state: "running" });
    expect(
      (await recordsSince(store.read, { [O1]: 0, [O2]: 0 }, 10)).map(
        (r) => `${r.origin.slice(-1)}:${r.version}`,
      ),
    ).toEqual(["1:5", "1:7", "2:3"]);
    expect((await recordsSince(store.read, { [O1]: 5 }, 10)).map((r) => r.version)).toEqual([7]);
    expect((await recordsSince(store.read, { [O1]: 0, [O2]: 0 }, 1)).map((r) => r.version)).toEqual([5]);
    expect((await recordsByVersions(store.read, [{ origin: O1, version: 7 }])).get(`${O1}@7`)?.id).toBe("c");
    expect((await liveOwners(store.read, [{ kind: "vm", id: "b" }])).get("vm/b")).toEqual([{ origin: O2 }]);
  });

  it("never lowers a vector entry", async () => {
    await store.write((tx) => raiseVector(tx, { [O1]: 9, [O2]: 3 }));
    await store.write((tx) => raiseVector(tx, { [O1]: 4, [O2]: 8 }));
    expect(await readVector(store.read)).toEqual({ [O1]: 9, [O2]: 8 });
  });

  it("moves a peer only from the state it is in", async () => {
    const p = await store.write((tx) =>
      insertPeer(tx, {
        id: O2,
        name: "west",
        apiUrl: "https://w:1",
        fedHost: "w",
        fedPort: 2,
        caPem: "pem",
        caFingerprint: "sha256:x",
        signingPublicKey: "k",
        protocol: 1,
      }),
    );
    expect(p.state).toBe("active");
    await store.write((tx) =>
      transitionPeer(tx, O2, "active", "quarantined", { kind: "replay", reason: "r" }),
    );
    await expect(store.write((tx) => transitionPeer(tx, O2, "active", "removed"))).rejects.toMatchObject({
      code: "NOVA_STATE_CHANGED",
    });
    await expect(store.write((tx) => transitionPeer(tx, O2, "removed", "active"))).rejects.toMatchObject({
      code: "NOVA_ILLEGAL_STATE",
    });
    const q = await getLivePeer(store.read, "west");
    expect([q.state, q.quarantineKind, q.quarantineReason]).toEqual(["quarantined", "replay", "r"]);
    await store.write((tx) => transitionPeer(tx, O2, "quarantined", "active"));
    expect((await getLivePeer(store.read, O2)).quarantineKind).toBeNull();
    await expect(getLivePeer(store.read, "nobody")).rejects.toMatchObject({ code: "NOVA_FED_PEER_UNKNOWN" });
  });

  it("uses a peering token once, refuses unknown and expired ones", async () => {
    await store.write((tx) => createPeeringToken(tx, "s1", 60, "admin"));
    const id = await checkPeeringToken(store.read, "s1");
    await store.write((tx) => useToken(tx, id, O1));
    await expect(checkPeeringToken(store.read, "s1")).rejects.toMatchObject({ code: "NOVA_FED_TOKEN_USED" });
    await expect(store.write((tx) => useToken(tx, id, O1))).rejects.toMatchObject({
      code: "NOVA_FED_TOKEN_USED",
    });
    await expect(checkPeeringToken(store.read, "nope")).rejects.toMatchObject({
      code: "NOVA_FED_TOKEN_INVALID",
    });
    await store.write((tx) => createPeeringToken(tx, "s2", 60, "admin"));
    await store.db.query(
      "UPDATE fed_tokens SET created_at = now() - interval '2 hours', expires_at = now() - interval '1 hour' WHERE used_at IS NULL",
    );
    await expect(checkPeeringToken(store.read, "s2")).rejects.toMatchObject({
      code: "NOVA_FED_TOKEN_EXPIRED",
    });
  });

  it("stores evidence with its signed records", async () => {
    const r = rec(O2, "x", 1).record;
    await store.write((tx) =>
      addEvidence(tx, { peerId: O2, senderId: O2, kind: "replay", detail: "d", records: [r] }),
    );
    const [e] = await listEvidence(store.read, O2);
    expect(e?.kind).toBe("replay");
    expect(e?.records).toEqual([r]);
  });
});
