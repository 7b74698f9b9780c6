// The control plane's tables on both engines (every write a compare-and-set on the epoch),
// and the election itself, in process: on PostgreSQL two replicas on one database, one
// leading; a clean stop hands over at the next tick, a leader whose row is taken stops.
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Leadership } from "../src/cluster/leadership.js";
import {
  listReplicas,
  lockLease,
  pruneReplicas,
  readLease,
  releaseLease,
  renewLease,
  takeLease,
  touchReplica,
} from "../src/cluster/store/control-plane.js";
import { Store } from "../src/cluster/store/store.js";
import { waitFor } from "../src/lib/wait.js";
import { createPostgresDatabase, ENGINES, storePerSuite, type TestDatabase } from "./helpers/databases.js";

const log = pino({ level: "silent" });
const FAST = { ttlMs: 1500, renewEveryMs: 250, marginMs: 500 };

describe.each(ENGINES)("control-plane store ($engine)", ({ create }) => {
  let store: Store;
  storePerSuite(create, (s) => {
    store = s;
  });

  it("takes, renews and releases the lease only from the epoch it read", async () => {
    const start = await readLease(store.read);
    expect(start.holder).toBeNull();
    const term = await store.write((tx) => takeLease(tx, "r1", start.epoch, 5000, null));
    expect(term?.epoch).toBe(start.epoch + 1);
    // A second taker that read the old epoch changes nothing.
    expect(await store.write((tx) => takeLease(tx, "r2", start.epoch, 5000, null))).toBeUndefined();
    const held = await readLease(store.read);
    expect(held).toMatchObject({ holder: "r1", epoch: term!.epoch });
    expect(held.expiresInMs).toBeGreaterThan(3000);
    expect(await store.write((tx) => renewLease(tx, "r1", term!.epoch, 5000, null))).toBe(true);
    expect(await store.write((tx) => renewLease(tx, "r2", term!.epoch, 5000, null))).toBe(false);
    expect(await store.write((tx) => renewLease(tx, "r1", term!.epoch + 1, 5000, null))).toBe(false);
    const locked = await store.write((tx) => lockLease(tx, false));
    expect(locked.row).toEqual({ holder: "r1", epoch: term!.epoch, holderPid: null, expired: false });
    expect(await store.write((tx) => releaseLease(tx, "r2", term!.epoch))).toBe(false);
    expect(await store.write((tx) => releaseLease(tx, "r1", term!.epoch))).toBe(true);
    const released = await store.write((tx) => lockLease(tx, false));
    expect(released.row).toMatchObject({ holder: null, expired: true });
  });

  it("records the replicas it sees, by the database's clock, and forgets old ones", async () => {
    await store.write((tx) =>
      touchReplica(tx, { id: "r1", apiUrl: "https://a:1", hostName: "a", version: "v" }),
    );
    await store.write((tx) =>
      touchReplica(tx, { id: "r2", apiUrl: "https://b:1", hostName: "b", version: "v" }),
    );
    await store.write((tx) =>
      touchReplica(tx, { id: "r1", apiUrl: "https://a:2", hostName: "a", version: "v" }),
    );
    const seen = await listReplicas(store.read);
    expect(seen.map((r) => [r.id, r.apiUrl]).sort()).toEqual([
      ["r1", "https://a:2"],
      ["r2", "https://b:1"],
    ]);
    expect(seen.every((r) => r.lastSeenAgeSeconds < 5)).toBe(true);
    await store.db.query(
      "UPDATE control_plane_replicas SET last_seen_at = now() - interval '2 days' WHERE id = 'r2'",
    );
    expect(await store.write((tx) => pruneReplicas(tx))).toBe(1);
    expect((await listReplicas(store.read)).map((r) => r.id)).toEqual(["r1"]);
  });
});

describe("the election on PGlite", () => {
  it("makes its one process the leader at start, whatever the row held", async () => {
    const store = await Store.open({ memory: true });
    await store.write(async (tx) => {
      const { row } = await lockLease(tx, false);
      await takeLease(tx, "a-previous-process", row.epoch, 60_000, null);
    });
    const elected: number[] = [];
    const l = new Leadership({
      store,
      self: () => ({ id: "only", apiUrl: "https://x:1", hostName: "x", version: "v" }),
      log,
      timing: FAST,
      onElected: async (epoch) => {
        elected.push(epoch);
      },
      onDeposed: async () => {},
    });
    await l.start();
    expect(l.isLeader).toBe(true);
    expect(elected).toEqual([2]);
    await l.stop();
    expect((await readLease(store.read)).holder).toBeNull();
    await store.close();
  });
});

describe("the election on PostgreSQL", () => {
  let db: TestDatabase;
  let store: Store;
  beforeAll(async () => {
    db = await createPostgresDatabase();
    store = await Store.open(db.location);
  });
  afterAll(async () => {
    await store?.close();
    await db?.drop();
  });

  function replica(id: string) {
    const events: string[] = [];
    const l = new Leadership({
      store,
      databaseUrl: db.url!,
      self: () => ({ id, apiUrl: `https://${id}:1`, hostName: id, version: "v" }),
      log,
      timing: FAST,
      onElected: async (epoch) => {
        events.push(`elected ${epoch}`);
      },
      onDeposed: async (reason) => {
        events.push(`deposed: ${reason}`);
      },
    });
    return { l, events };
  }

  it("elects one of two replicas, hands over on a clean stop, and stops a leader whose row was taken", async () => {
    const a = replica("a");
    const b = replica("b");
    await a.l.start();
    await b.l.start();
    expect(a.l.isLeader).toBe(true);
    expect(b.l.isLeader).toBe(false);
    expect(b.l.status()).toMatchObject({ role: "follower", leader: "a", epoch: 1 });
    // Followers keep following while the leader renews.
    await waitFor(
      async () => (await readLease(store.read)).renewedAt !== (await readLease(store.read)).acquiredAt,
      {
        what: "a renewal",
      },
    );
    expect(b.l.isLeader).toBe(false);

    await a.l.stop();
    await waitFor(() => b.l.isLeader, { timeoutMs: 5000, what: "b to lead after a's clean stop" });
    expect(b.l.status().epoch).toBe(2);
    expect(a.events).toEqual(["elected 1", "deposed: this server is shutting down"]);

    // Someone takes the row from under b (an operator, a replica with a wrong clock): b stops at its next tick.
    await store.write((tx) => takeLease(tx, "intruder", 2, 60_000, null));
    await waitFor(() => !b.l.isLeader, { timeoutMs: 5000, what: "b to stop leading" });
    expect(b.events.at(-1)).toContain("deposed: replica intruder holds the lease at epoch 3");
    await b.l.stop();
  });
});
