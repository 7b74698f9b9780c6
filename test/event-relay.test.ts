// Live-only events (migration and execution progress, execution logs: id 0, in no table)
// between two server replicas' buses on one real PostgreSQL database, as
// cluster/event-relay.ts carries them in the notifications themselves: each arrives once,
// in order, and is not echoed back; a burst is batched under the payload limit, and what
// does not fit the bounded queue or a payload is dropped and counted, never queued without
// bound.
import { randomUUID } from "node:crypto";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ClusterEvent } from "../src/api/types/events.js";
import { EventRelay, LIVE_QUEUE_CAP } from "../src/cluster/event-relay.js";
import { appendEvent } from "../src/cluster/store/events.js";
import { Store } from "../src/cluster/store/store.js";
import { waitFor } from "../src/lib/wait.js";
import { createPostgresDatabase, type TestDatabase } from "./helpers/databases.js";

const live = (n: number, extra = ""): ClusterEvent => ({
  id: 0,
  at: new Date().toISOString(),
  type: "execution.log",
  resourceType: "execution",
  resourceId: "00000000-0000-4000-8000-000000000001",
  data: { step: "s", level: "info", message: `line ${n}${extra}` },
});

describe("live events between replicas on PostgreSQL", () => {
  let db: TestDatabase;
  const stores: Store[] = [];
  const relays: EventRelay[] = [];
  /** What each replica's bus carried, live events only. */
  const seen: ClusterEvent[][] = [[], []];

  beforeAll(async () => {
    db = await createPostgresDatabase();
    for (let i = 0; i < 2; i++) {
      const store = await Store.open(db.location);
      stores.push(store);
      store.bus.subscribe((e) => {
        if (e.id === 0) seen[i]!.push(e);
      });
      const relay = new EventRelay(store, db.url!, randomUUID(), pino({ level: "silent" }));
      await relay.start();
      relays.push(relay);
    }
  });
  afterAll(async () => {
    for (const r of relays) await r.close();
    for (const s of stores) await s.close();
    await db?.drop();
  });

  const messages = (i: number) => seen[i]!.map((e) => (e.data as { message: string }).message);
  const reset = () => {
    seen[0]!.length = 0;
    seen[1]!.length = 0;
  };

  it("carries each live event to the other replica once, in order, without echo", async () => {
    reset();
    for (let n = 0; n < 5; n++) stores[0]!.bus.publish([live(n)]);
    await waitFor(() => seen[1]!.length >= 5, { timeoutMs: 10_000, what: "the live events on replica 2" });
    expect(messages(1)).toEqual(["line 0", "line 1", "line 2", "line 3", "line 4"]);
    expect(seen[1]![0]).toMatchObject({ id: 0, type: "execution.log", resourceType: "execution" });
    // And the other way; neither replica hears its own events back.
    stores[1]!.bus.publish([live(99)]);
    await waitFor(() => seen[0]!.some((e) => e.data.message === "line 99"), {
      timeoutMs: 10_000,
      what: "the live event on replica 1",
    });
    // A committed event goes round through the table: it is a marker that anything echoed
    // would have arrived by now.
    await stores[0]!.write(async (tx, emit) => {
      emit(await appendEvent(tx, { type: "test.marker", resourceType: "test", resourceId: null, data: {} }));
    });
    const markers: ClusterEvent[] = [];
    const stop = stores[1]!.bus.subscribe((e) => {
      if (e.type === "test.marker") markers.push(e);
    });
    await waitFor(() => markers.length > 0, { timeoutMs: 10_000, what: "the committed marker on replica 2" });
    stop();
    expect(messages(0)).toEqual(["line 0", "line 1", "line 2", "line 3", "line 4", "line 99"]);
    expect(messages(1)).toEqual(["line 0", "line 1", "line 2", "line 3", "line 4", "line 99"]);
  });

  it("batches a burst under the payload limit and drops, counted, what the bounded queue cannot hold", async () => {
    reset();
    const before = relays[0]!.liveDropped;
    const burst = Array.from({ length: LIVE_QUEUE_CAP * 2 }, (_, n) => live(n));
    stores[0]!.bus.publish(burst);
    const dropped = relays[0]!.liveDropped - before;
    expect(dropped).toBeGreaterThan(0);
    await waitFor(() => seen[1]!.length >= burst.length - dropped, {
      timeoutMs: 20_000,
      what: "the burst's kept events on replica 2",
    });
    // In order, the first ones kept (the queue drops the newest when full).
    expect(messages(1)).toEqual(burst.slice(0, burst.length - dropped).map((e) => e.data.message));
    expect(burst.length - dropped).toBeGreaterThanOrEqual(LIVE_QUEUE_CAP);
  });

  it("drops, counted, an event too big for one notification", async () => {
    reset();
    const before = relays[0]!.liveDropped;
    stores[0]!.bus.publish([live(1, "x".repeat(10_000)), live(2)]);
    expect(relays[0]!.liveDropped - before).toBe(1);
    await waitFor(() => seen[1]!.length >= 1, { timeoutMs: 10_000, what: "the small event on replica 2" });
    expect(messages(1)).toEqual(["line 2"]);
  });
});
