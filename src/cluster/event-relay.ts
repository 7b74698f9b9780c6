/**
 * Cluster events across server replicas (docs/operations.md "Running replicas"): the event
 * bus is in-process, so an event committed by another replica (the leader's reconciler
 * moving a VM, a heartbeat another replica took) would reach this replica's SSE streams
 * only on a client's reconnect. On PostgreSQL every replica NOTIFYs `nova_events` after
 * committing events (coalesced) and LISTENs on its own connection; on a notification it
 * reads the events table past what it has seen (re-reading a small window, since ids are
 * taken before commit and may commit out of order) and publishes the ones its bus has not
 * carried. Nothing to do on PGlite (one process).
 *
 * Live-only events (id 0: migration and execution progress, execution logs) are in no
 * table: they travel in the notification itself, on `nova_live`, batched into payloads
 * under PostgreSQL's 8000-byte limit (one in flight, the rest queued). They are best
 * effort, as on the bus: a full queue or an event too big for a payload is dropped and
 * counted, and a later progress event supersedes it anyway.
 */
import type { Logger } from "pino";
import type { ClusterEvent } from "../api/types/events.js";
import { latestEventId, listEventsAfter } from "./store/events.js";
import type { Store } from "./store/store.js";

/** The channel committed events are announced on (payload: the announcing replica). */
export const EVENTS_CHANNEL = "nova_events";
/** Event ids re-read below the high-water mark (out-of-order commits). */
const REREAD_WINDOW = 64;
/** Event ids remembered as carried by the bus already. */
const SEEN_CAP = 20_000;
/** The channel live-only events travel on (payload: `{ from, events }`). */
export const LIVE_CHANNEL = "nova_live";
/** A NOTIFY payload must be shorter than 8000 bytes. */
export const LIVE_PAYLOAD_BYTES = 7900;
/** Live events waiting for a notification; more are dropped. */
export const LIVE_QUEUE_CAP = 512;

/** Relays other replicas' events, committed and live-only, onto this replica's bus; sends this one's live events to them. */
export class EventRelay {
  private client: import("pg").Client | undefined;
  private closed = false;
  private retry: NodeJS.Timeout | undefined;
  private readonly seen = new Set<number>();
  private readonly relayed = new WeakSet<ClusterEvent>();
  private cursor = 0;
  private reading = false;
  private readAgain = false;
  private announcing = false;
  private announceAgain = false;
  /** Live events to send, each serialized. */
  private live: string[] = [];
  private sendingLive = false;
  /** Live events not relayed: the queue was full, or one did not fit a payload. */
  liveDropped = 0;
  private unsubscribe: () => void = () => {};

  constructor(
    private readonly store: Store,
    private readonly url: string,
    private readonly replicaId: string,
    private readonly log: Logger,
  ) {}

  /** Starts listening (never throws: it reconnects in the background). */
  async start(): Promise<void> {
    this.cursor = await latestEventId(this.store.read).catch(() => 0);
    this.unsubscribe = this.store.bus.subscribe((e) => {
      if (e.id === 0) {
        if (!this.relayed.has(e)) this.queueLive(e);
        return;
      }
      this.remember(e.id);
      if (!this.relayed.has(e)) this.announce();
    });
    await this.connect(250);
  }

  /** Whether `e` came from another replica through this relay (so it is not news to announce). */
  isRelayed(e: ClusterEvent): boolean {
    return this.relayed.has(e);
  }

  /** Stops listening. */
  async close(): Promise<void> {
    this.closed = true;
    this.unsubscribe();
    clearTimeout(this.retry);
    await this.client?.end().catch(() => {});
    this.client = undefined;
  }

  private remember(id: number): void {
    this.seen.add(id);
    if (this.seen.size > SEEN_CAP) {
      // Sets iterate in insertion order: drop the oldest.
      const oldest = this.seen.values().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
    if (id > this.cursor) this.cursor = id;
  }

  /** Tells the other replicas that events were committed here (one in flight, one more after it). */
  private announce(): void {
    if (this.closed) return;
    if (this.announcing) {
      this.announceAgain = true;
      return;
    }
    this.announcing = true;
    void this.store.db
      .query("SELECT pg_notify($1, $2)", [EVENTS_CHANNEL, this.replicaId])
      .catch(() => {})
      .finally(() => {
        this.announcing = false;
        if (this.announceAgain) {
          this.announceAgain = false;
          this.announce();
        }
      });
  }

  /** Queues a live event of this replica's for the others. */
  private queueLive(e: ClusterEvent): void {
    if (this.closed) return;
    const json = JSON.stringify(e);
    if (this.live.length >= LIVE_QUEUE_CAP || Buffer.byteLength(json) > LIVE_PAYLOAD_BYTES - 64) {
      this.liveDropped++;
      return;
    }
    this.live.push(json);
    this.sendLive();
  }

  /** Sends the queued live events, as many per notification as fit. */
  private sendLive(): void {
    if (this.sendingLive || this.live.length === 0 || this.closed) return;
    this.sendingLive = true;
    const head = `{"from":${JSON.stringify(this.replicaId)},"events":[`;
    let bytes = Buffer.byteLength(head) + 2;
    let n = 0;
    while (n < this.live.length) {
      const size = Buffer.byteLength(this.live[n]!) + 1;
      if (bytes + size > LIVE_PAYLOAD_BYTES) break;
      bytes += size;
      n++;
    }
    const payload = `${head}${this.live.splice(0, n).join(",")}]}`;
    void this.store.db
      .query("SELECT pg_notify($1, $2)", [LIVE_CHANNEL, payload])
      .catch(() => {
        this.liveDropped += n;
      })
      .finally(() => {
        this.sendingLive = false;
        this.sendLive();
      });
  }

  /** Publishes the live events another replica sent. */
  private receiveLive(payload: string): void {
    let message: { from?: unknown; events?: unknown };
    try {
      message = JSON.parse(payload) as typeof message;
    } catch {
      return;
    }
    if (message.from === this.replicaId || !Array.isArray(message.events)) return;
    const events = (message.events as ClusterEvent[]).filter((e) => e?.id === 0);
    for (const e of events) this.relayed.add(e);
    this.store.bus.publish(events);
  }

  /** Reads what other replicas committed and publishes what this bus has not carried. */
  private read(): void {
    if (this.closed) return;
    if (this.reading) {
      this.readAgain = true;
      return;
    }
    this.reading = true;
    void (async () => {
      try {
        for (;;) {
          const batch = await listEventsAfter(
            this.store.read,
            Math.max(0, this.cursor - REREAD_WINDOW),
            1000,
          );
          const fresh = batch.filter((e) => !this.seen.has(e.id));
          for (const e of fresh) this.relayed.add(e);
          // remember() runs in the bus subscription as each is published.
          this.store.bus.publish(fresh);
          if (batch.length < 1000 || fresh.length === 0) break;
        }
      } catch (err) {
        this.log.warn({ err }, "relaying other replicas' events failed; the next announcement retries");
      } finally {
        this.reading = false;
        if (this.readAgain) {
          this.readAgain = false;
          this.read();
        }
      }
    })();
  }

  private async connect(backoffMs: number): Promise<void> {
    if (this.closed) return;
    const pg = (await import("pg")).default;
    const client = new pg.Client({ connectionString: this.url, application_name: "novacron-events" });
    const again = () => {
      if (this.closed) return;
      this.client = undefined;
      clearTimeout(this.retry);
      this.retry = setTimeout(() => void this.connect(Math.min(backoffMs * 2, 5000)), backoffMs);
      this.retry.unref();
    };
    client.on("error", () => {
      client.end().catch(() => {});
      again();
    });
    client.on("notification", (msg) => {
      if (msg.channel === EVENTS_CHANNEL && msg.payload !== this.replicaId) this.read();
      if (msg.channel === LIVE_CHANNEL && msg.payload) this.receiveLive(msg.payload);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${EVENTS_CHANNEL}`);
      await client.query(`LISTEN ${LIVE_CHANNEL}`);
      if (this.closed) {
        await client.end().catch(() => {});
        return;
      }
      this.client = client;
      // Whatever was committed while we were not listening.
      this.read();
    } catch {
      client.end().catch(() => {});
      again();
    }
  }
}
