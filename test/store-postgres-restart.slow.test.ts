// The store on a PostgreSQL server that goes away mid-transaction (a database restart
// while a server works): the transaction fails with the store's error, the process lives
// on (a connection error on a checked-out client has a listener), and once the database
// is back the next transaction works on a fresh connection.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Db, openDb } from "../src/cluster/store/db.js";
import { PrivatePostgres } from "./helpers/private-postgres.js";

describe("the store across a database restart", { timeout: 120_000 }, () => {
  let pg: PrivatePostgres;
  let db: Db;

  beforeAll(async () => {
    pg = await PrivatePostgres.start();
    db = await openDb({ url: await pg.createDatabase("restart") });
    await db.exec("CREATE TABLE t (v int)");
  }, 60_000);

  afterAll(async () => {
    await db?.close().catch(() => {});
    await pg?.destroy();
  });

  it("fails a transaction whose connection died while it waited, and serves the next one", async () => {
    let resume!: () => void;
    const waiting = new Promise<void>((r) => {
      resume = r;
    });
    let began!: () => void;
    const begun = new Promise<void>((r) => {
      began = r;
    });
    const tx = db.transaction(async (q) => {
      await q.query("INSERT INTO t VALUES (1)");
      began();
      // The transaction awaits something else (an agent, a peer) while the database stops.
      await waiting;
      await q.query("INSERT INTO t VALUES (2)");
    });
    await begun;
    await pg.stopServer();
    resume();
    await expect(tx).rejects.toThrow();
    await pg.startServer();
    await db.transaction(async (q) => {
      await q.query("INSERT INTO t VALUES (3)");
    });
    const { rows } = await db.query<{ v: number }>("SELECT v FROM t ORDER BY v");
    // Nothing of the broken transaction was kept.
    expect(rows.map((r) => r.v)).toEqual([3]);
  });
});
