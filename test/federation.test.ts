// Federation I on real servers (PGlite, real TLS, real DWCP over loopback): peering with a
// one-time token, the global view converging both ways, bad peering input refused with
// nothing changed, a stopped peer shown as stale, records surviving a restart, removal.
import { rm } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Peer } from "../src/api/types/federation.js";
import { formatPeeringToken } from "../src/federation/peering-token.js";
import { globalVms, peer, publishVm, startCluster, type TestCluster, until } from "./helpers/federation.js";
import { addHost, addImage, addVm } from "./helpers/store-fixtures.js";

interface ApiError {
  error: { code: string; message: string };
}

const peersOf = async (c: TestCluster) =>
  (await c.api<{ peers: Peer[] }>("GET", "/v1/federation/peers")).body.peers;
const peerNames = async (c: TestCluster) => (await peersOf(c)).map((p) => p.name).sort();
const token = async (c: TestCluster) =>
  (await c.api<{ token: string }>("POST", "/v1/federation/tokens", {})).body.token;

describe("federation: peering and the global view", () => {
  let a: TestCluster;
  let b: TestCluster;
  let c: TestCluster;
  const started: TestCluster[] = [];

  beforeAll(async () => {
    a = await startCluster("east");
    b = await startCluster("west");
    c = await startCluster("north");
    started.push(a, b, c);
  });
  afterAll(async () => {
    for (const x of started) await x.server.close().catch(() => {});
    for (const x of started) await rm(x.dir, { recursive: true, force: true });
  });

  it("peers with a token and converges both ways", async () => {
    await peer(a, b);
    const ha = await addHost(a.server.store.db, "ha");
    await addVm(a.server.store.db, "web", await addImage(a.server.store.db, "img"), ha);
    const hb = await addHost(b.server.store.db, "hb");
    await addVm(b.server.store.db, "db", await addImage(b.server.store.db, "img"), hb);
    await a.server.federation.publishNow();
    await b.server.federation.publishNow();
    const want = ["east/web", "west/db"].join();
    await until(
      "both views",
      async () => (await globalVms(a)).join() === want && (await globalVms(b)).join() === want,
    );
    const clusters = await b.api<{
      clusters: { name: string; self: boolean; stale: boolean; vms: number }[];
    }>("GET", "/v1/federation/clusters");
    expect(clusters.body.clusters.map((x) => [x.name, x.self, x.stale, x.vms])).toEqual([
      ["west", true, false, 1],
      ["east", false, false, 1],
    ]);
    // Each side pinned the other's CA and signing key.
    const [east] = await peersOf(b);
    expect(east?.caFingerprint).toBe(a.server.caFingerprint);
    expect(east?.signingKeyFingerprint).toMatch(/^sha256:[0-9a-f]{64}$/);
  });

  it("is quiet when nothing changes: no record is written, only heartbeats cross", async () => {
    const seq = async (c: TestCluster) =>
      Number((await c.server.store.db.query<{ seq: string }>("SELECT seq FROM cluster_info")).rows[0]!.seq);
    await a.server.federation.publishNow();
    const before = [await seq(a), await seq(b)];
    const contact = (await peersOf(b))[0]!.lastContactAt;
    // A heartbeat (500 ms here) crosses: the link stays in contact, and nobody publishes.
    await until("a heartbeat", async () => (await peersOf(b))[0]!.lastContactAt !== contact);
    await a.server.federation.publishNow();
    await b.server.federation.publishNow();
    expect([await seq(a), await seq(b)]).toEqual(before);
  });

  it("refuses bad peering input with a stable code and changes nothing", async () => {
    const expectRefused = async (
      r: { status: number; body: unknown },
      status: number,
      code: string,
    ): Promise<void> => {
      expect(r.status, JSON.stringify(r.body)).toBe(status);
      expect((r.body as ApiError).error.code).toBe(code);
    };
    const add = (on: TestCluster, t: string) => on.api("POST", "/v1/federation/peers", { token: t });

    await expectRefused(await add(c, "not-a-token"), 401, "NOVA_FED_TOKEN_INVALID");

    // A token of east's that was never made: right CA, unknown secret.
    const forged = formatPeeringToken({
      secret: "x".repeat(43),
      caFingerprint: a.server.caFingerprint,
      apiUrl: a.server.url,
    });
    await expectRefused(await add(c, forged), 401, "NOVA_FED_TOKEN_INVALID");

    const expired = await token(a);
    await a.server.store.db.query(
      "UPDATE fed_tokens SET created_at = now() - interval '2 hours', expires_at = now() - interval '1 hour' WHERE used_at IS NULL",
    );
    await expectRefused(await add(c, expired), 401, "NOVA_FED_TOKEN_EXPIRED");

    // A cluster whose name east already has: refused on both sides, the token stays unused.
    const clash = await startCluster("east");
    started.push(clash);
    const fresh = await token(a);
    await expectRefused(await add(clash, fresh), 409, "NOVA_FED_NAME_CLASH");
    expect(await peerNames(clash)).toEqual([]);

    // Already peers, and a cluster's own token.
    await expectRefused(await add(b, await token(a)), 409, "NOVA_FED_PEER_EXISTS");
    await expectRefused(await add(a, await token(a)), 409, "NOVA_FED_PEER_EXISTS");

    // A token pointing at a server that is gone.
    const gone = await startCluster("gone");
    const goneToken = await token(gone);
    await gone.server.close();
    await rm(gone.dir, { recursive: true, force: true });
    await expectRefused(await add(c, goneToken), 502, "NOVA_FED_PEER_UNREACHABLE");

    // A token used once cannot be used again.
    expect((await add(c, fresh)).status).toBe(201);
    await expectRefused(await add(clash, fresh), 409, "NOVA_FED_TOKEN_USED");

    await expectRefused(await a.api("DELETE", "/v1/federation/peers/nobody"), 404, "NOVA_FED_PEER_UNKNOWN");
    expect(await peerNames(a)).toEqual(["north", "west"]);
    expect(await peerNames(b)).toEqual(["east"]);
    expect(await peerNames(c)).toEqual(["east"]);
    expect(await peerNames(clash)).toEqual([]);
  });

  it("refuses an incompatible protocol version at redeem", async () => {
    const card = { ...b.server.federation.card(), protocol: 99 };
    const r = await b.api("POST", "/v1/federation/redeem", { secret: "x", cluster: card, takenNames: [] });
    // b's own API: the protocol check comes first, whoever calls.
    expect(r.status).toBe(409);
    expect((r.body as unknown as ApiError).error.code).toBe("NOVA_FED_PROTOCOL");
  });

  it("shows a peer that stopped answering as stale, and its VMs too", async () => {
    await until("north sees east", async () => (await globalVms(c)).includes("east/web"));
    await c.server.close();
    await until(
      "east shows north stale",
      async () => (await peersOf(a)).find((p) => p.name === "north")?.stale === true,
    );
    const clusters = (
      await a.api<{ clusters: { name: string; stale: boolean }[] }>("GET", "/v1/federation/clusters")
    ).body.clusters;
    expect(clusters.find((x) => x.name === "north")?.stale).toBe(true);
    expect(clusters.find((x) => x.name === "west")?.stale).toBe(false);
    // east keeps serving its own API while a peer is down.
    expect((await a.api("GET", "/v1/vms")).status).toBe(200);
  });

  it("keeps every record across a restart and resumes where it was", async () => {
    await a.server.close();
    const restarted = await startCluster("east", { dir: a.dir });
    started.push(restarted);
    a = restarted;
    // Straight from the database, before any contact.
    expect(await globalVms(a)).toEqual(["east/web", "west/db"]);
    await publishVm(b, "cache", "hb2");
    await until("east sees west's new VM", async () => (await globalVms(a)).includes("west/cache"));
    // And the other way: east came back on new ports and said so in its hello.
    await publishVm(a, "later", "ha2");
    await until("west sees east's new VM", async () => (await globalVms(b)).includes("east/later"));
  });

  it("follows a peer that renames itself", async () => {
    await a.server.close();
    const renamed = await startCluster("eastern", { dir: a.dir });
    started.push(renamed);
    a = renamed;
    await until("west to call it eastern", async () => (await peerNames(b)).join() === "eastern");
    expect(await globalVms(b)).toContain("eastern/web");
  });

  it("removes a peer: says what it held, drops its records, stops the exchange", async () => {
    const removed = await b.api<{ peer: Peer; held: { hosts: number; vms: number; images: number } }>(
      "DELETE",
      "/v1/federation/peers/eastern",
    );
    expect(removed.status).toBe(200);
    expect(removed.body.held).toEqual({ hosts: 2, vms: 2, images: 1 });
    expect(removed.body.peer.state).toBe("removed");
    expect(await globalVms(b)).toEqual(["west/cache", "west/db"]);
    expect(await peerNames(b)).toEqual([]);
    // east can no longer pull from west: its link fails and west shows as stale there.
    await until(
      "east shows west stale",
      async () => (await peersOf(a)).find((p) => p.name === "west")?.stale === true,
    );
  });
});

describe("federation: records travel through a third cluster", () => {
  const cs: TestCluster[] = [];

  afterAll(async () => {
    for (const x of cs) await x.server.close().catch(() => {});
    for (const x of cs) await rm(x.dir, { recursive: true, force: true });
  });

  it("reaches a cluster that cannot pull from the origin, signed by the origin, through a common peer", async () => {
    const [a, b, c] = [await startCluster("east"), await startCluster("west"), await startCluster("north")];
    cs.push(a, b, c);
    await peer(a, b);
    await peer(b, c);
    await peer(a, c);
    // north refuses east from now on (an admin's quarantine there): east can no longer pull from north.
    const eastOnNorth = (await peersOf(c)).find((p) => p.name === "east")!;
    await c.server.store.db.query("UPDATE fed_peers SET state = 'quarantined' WHERE id = $1", [
      eastOnNorth.id,
    ]);
    await until("east to be refused by north", async () =>
      /quarantined/.test((await peersOf(a)).find((p) => p.name === "north")?.lastError ?? ""),
    );
    const h = await addHost(c.server.store.db, "hn");
    await addVm(c.server.store.db, "relayed", await addImage(c.server.store.db, "img"), h);
    await c.server.federation.publishNow();
    await until("east holds north's VM", async () => (await globalVms(a)).includes("north/relayed"));
    // Still refused: the VM came through west, signed by north.
    expect((await peersOf(a)).find((p) => p.name === "north")?.lastError).toMatch(/quarantined/);
  });
});

describe("federation: two clusters under one CA", () => {
  const cs: TestCluster[] = [];

  afterAll(async () => {
    for (const x of cs) await x.server.close().catch(() => {});
    for (const x of cs) await rm(x.dir, { recursive: true, force: true });
  });

  it("peer and converge: the hello says which cluster a certificate of the shared CA is", async () => {
    const a = await startCluster("east");
    cs.push(a);
    const b = await startCluster("west", {
      extra: { caCertFile: `${a.dir}/pki/ca.crt`, caKeyFile: `${a.dir}/pki/ca.key` },
    });
    cs.push(b);
    expect(b.server.caFingerprint).toBe(a.server.caFingerprint);
    await peer(a, b);
    const ha = await addHost(a.server.store.db, "ha");
    await addVm(a.server.store.db, "web", await addImage(a.server.store.db, "img"), ha);
    await a.server.federation.publishNow();
    const hb = await addHost(b.server.store.db, "hb");
    await addVm(b.server.store.db, "db", await addImage(b.server.store.db, "img"), hb);
    await b.server.federation.publishNow();
    const want = ["east/web", "west/db"].join();
    await until(
      "both views",
      async () => (await globalVms(a)).join() === want && (await globalVms(b)).join() === want,
    );
  });

  it("carries a backlog of thousands of records in several batches", async () => {
    const [a, b] = cs as [TestCluster, TestCluster];
    const db = b.server.store.db;
    const { rows } = await db.query<{ h: string; i: string }>(
      "SELECT (SELECT id FROM hosts LIMIT 1) AS h, (SELECT id FROM images LIMIT 1) AS i",
    );
    // 3,000 VM records: two batches (2,000 a batch), each well over a megabyte.
    await db.query(
      `INSERT INTO vms (id, name, image_id, vcpus, memory_mib, desired_state, state, host_id)
       SELECT gen_random_uuid(), 'bulk-' || g, $1, 1, 64, 'running', 'scheduled', $2 FROM generate_series(1, 3000) g`,
      [rows[0]!.i, rows[0]!.h],
    );
    await b.server.federation.publishNow();
    await until("east holds every VM of west's", async () => (await globalVms(a)).length === 3002, 60_000);
  }, 90_000);
});
