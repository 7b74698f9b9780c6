/**
 * The store: the database, migrated on open, plus the event bus that carries committed
 * events to live listeners. `write` runs a transaction and publishes the events it
 * recorded only after the commit, so nobody hears about a change that rolled back.
 */
import type { ClusterEvent } from "../../api/types/events.js";
import { type Db, type DbLocation, openDb, type Queryable, type ReadQueryable } from "./db.js";
import { EventBus } from "./event-bus.js";
import { migrate } from "./migrate.js";

/** Database + event bus. */
export class Store {
  readonly bus = new EventBus();

  private constructor(readonly db: Db) {}

  /** Opens (PostgreSQL or PGlite) and migrates. */
  static async open(location: DbLocation): Promise<Store> {
    const db = await openDb(location);
    try {
      await migrate(db);
    } catch (err) {
      await db.close().catch(() => {});
      throw err;
    }
    return new Store(db);
  }

  /**
   * For reads outside a transaction. Typed read-only: store functions that write take a
   * `Queryable`, which this is not, so a write must go through `write` (or `db`).
   */
  get read(): ReadQueryable {
    return this.db;
  }

  /** Runs `fn` in a transaction; events passed to `emit` are published after commit. */
  async write<T>(fn: (tx: Queryable, emit: (event: ClusterEvent) => void) => Promise<T>): Promise<T> {
    const events: ClusterEvent[] = [];
    const result = await this.db.transaction((tx) => fn(tx, (e) => events.push(e)));
    this.bus.publish(events);
    return result;
  }

  /** Closes the database. */
  close(): Promise<void> {
    return this.db.close();
  }
}
