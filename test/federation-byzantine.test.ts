// Byzantine detection against a deliberately misbehaving peer (test/helpers/rogue-peer.ts)
// that peers with a real server through the real redeem route and speaks ASS over real
// DWCP with mutual TLS. For each misbehaviour: the bad record is not accepted, the
// evidence is stored, the peer is quarantined (its further records refused), the metric
// and the event are raised, the peer list says why, and only an admin lifts it.
import { rm } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Peer } from "../src/api/types/federation.js";
import { MAX_RECORD_BYTES } from "../src/federation/records.js";
import { startCluster, type TestCluster, until } from "./helpers/federation.js";
import { RoguePeer } from "./helpers/rogue-peer.js";
import { addHost, addImage, addVm } from "./helpers/store-fixtures.js";

interface Vm {
  id: string;
  name: string;
  state: string;
  cluster: { name: string };
}

describe("federation: a misbehaving peer is detected and quarantined", () => {
  let victim: TestCluster;
  let rogue: RoguePeer;
  let ownVmId: string;

  const peerState = async (): Promise<Peer> =>
    (await victim.api<{ peers: Peer[] }>("GET", "/v1/federation/peers")).body.peers.find(
      (p) => p.name === "rogue",
    )!;
  const rogueVms = async (): Promise<Record<string, string>> =>
    Object.fromEntries(
      (await victim.api<{ vms: Vm[] }>("GET", "/v1/federation/vms")).body.vms
        .filter((v) => v.cluster.name === "rogue")
        .map((v) => [v.id, v.state]),
    );
  const metric = async (kind: string): Promise<number> => {
    const text = await victim.metrics();
    const m = new RegExp(`^novacron_federation_violations_total\\{kind="${kind}"\\} (\\d+)`, "m").exec(text);
    return m ? Number(m[1]) : 0;
  };
  const quarantined = async (kind: string): Promise<Peer> => {
    await until(`quarantine for ${kind}`, async () => (await peerState()).state === "quarantined");
    const p = await peerState();
    expect(p.quarantine?.kind).toBe(kind);
    expect(p.quarantine?.reason).toBeTruthy();
    expect(p.quarantine?.evidence).toBeGreaterThan(0);
    expect(await metric(kind)).toBe(1);
    const events = await victim.server.store.db.query<{ data: { kind: string } }>(
      "SELECT data FROM events WHERE type = 'federation.peer.quarantined' ORDER BY id DESC LIMIT 1",
    );
    expect(events.rows[0]?.data.kind).toBe(kind);
    return p;
  };
  const lift = async (): Promise<void> => {
    const r = await victim.api<Peer>("POST", "/v1/federation/peers/rogue/unquarantine");
    expect(r.status).toBe(200);
    expect(r.body.state).toBe("active");
  };
  const served = async (): Promise<void> => {
    await until("the rogue's batch was pulled", async () => rogue.drained);
  };

  beforeAll(async () => {
    victim = await startCluster("victim");
    const h = await addHost(victim.server.store.db, "h1");
    ownVmId = await addVm(victim.server.store.db, "mine", await addImage(victim.server.store.db, "img"), h);
    await victim.server.federation.publishNow();
    rogue = await RoguePeer.start("rogue", victim.server.caPem);
    const t = await victim.api<{ token: string }>("POST", "/v1/federation/tokens", {});
    await rogue.redeem(t.body.token);
  });
  afterAll(async () => {
    await rogue?.close();
    await victim?.server.close();
    if (victim) await rm(victim.dir, { recursive: true, force: true });
  });

  it("accepts an honest record first", async () => {
    rogue.serve([rogue.sign({ kind: "vm", id: "11111111-1111-4111-8111-111111111111", version: 1 })]);
    await until("the honest record", async () => Object.keys(await rogueVms()).length === 1);
    expect((await peerState()).state).toBe("active");
  });

  it("equivocation: a second record under a version already used", async () => {
    rogue.serve([rogue.sign({ kind: "vm", id: "22222222-2222-4222-8222-222222222222", version: 1 })]);
    const p = await quarantined("equivocation");
    expect(p.quarantine?.evidence).toBe(1);
    const ev = await victim.api<{ evidence: { kind: string; records: unknown[] }[] }>(
      "GET",
      "/v1/federation/peers/rogue/evidence",
    );
    expect(ev.body.evidence[0]?.kind).toBe("equivocation");
    expect(ev.body.evidence[0]?.records).toHaveLength(2);
    expect(Object.keys(await rogueVms())).toEqual(["11111111-1111-4111-8111-111111111111"]);
  });

  it("a quarantined peer's records are not taken until an admin lifts it", async () => {
    const pulls = rogue.pulls;
    rogue.serve([rogue.sign({ kind: "vm", id: "33333333-3333-4333-8333-333333333333", version: 2 })]);
    // The victim no longer pulls from it; give its links a few heartbeats to prove it.
    await new Promise((r) => setTimeout(r, 1500));
    expect(rogue.pulls).toBe(pulls);
    expect(Object.keys(await rogueVms())).toHaveLength(1);
    await lift();
    await served();
    await until("the record after the lift", async () => Object.keys(await rogueVms()).length === 2);
  });

  it("bad signature: a record its origin did not sign", async () => {
    const honest = rogue.sign({ kind: "vm", id: "44444444-4444-4444-8444-444444444444", version: 3 });
    rogue.serve([{ ...honest, body: { ...honest.body, state: "stopped" } }]);
    await quarantined("bad-signature");
    expect(Object.keys(await rogueVms())).not.toContain("44444444-4444-4444-8444-444444444444");
    await lift();
  });

  it("replay: an old version of a record sent again", async () => {
    const id = "11111111-1111-4111-8111-111111111111";
    rogue.serve([rogue.sign({ kind: "vm", id, version: 4, body: { name: "x", state: "stopped" } })]);
    await until("the update", async () => (await rogueVms())[id] === "stopped");
    rogue.serve([rogue.sign({ kind: "vm", id, version: 1 })]);
    await quarantined("replay");
    expect((await rogueVms())[id]).toBe("stopped");
    await lift();
  });

  it("claiming what it does not own: a VM of the victim's", async () => {
    rogue.serve([
      rogue.sign({ kind: "vm", id: ownVmId, version: 5, body: { name: "mine", state: "stopped" } }),
    ]);
    await quarantined("not-owner");
    const mine = (await victim.api<{ vms: Vm[] }>("GET", "/v1/federation/vms")).body.vms.filter(
      (v) => v.id === ownVmId,
    );
    expect(mine.map((v) => [v.cluster.name, v.state])).toEqual([["victim", "scheduled"]]);
    await lift();
  });

  it("a record over the size limit is refused without a quarantine", async () => {
    const id = "55555555-5555-4555-8555-555555555555";
    rogue.serve(
      [
        rogue.sign({
          kind: "vm",
          id,
          version: 6,
          body: { name: "big", pad: "x".repeat(MAX_RECORD_BYTES - 500) },
        }),
      ].map((r) => ({ ...r, body: { ...r.body, pad: "x".repeat(MAX_RECORD_BYTES + 10) } })),
    );
    await served();
    // A further pull means the victim has applied (and refused) the batch.
    const after = rogue.pulls;
    await until("the next pull", async () => rogue.pulls > after);
    expect((await peerState()).state).toBe("active");
    expect(Object.keys(await rogueVms())).not.toContain(id);
  });
});
