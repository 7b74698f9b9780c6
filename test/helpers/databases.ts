/**
 * Test databases: a fresh PostgreSQL database per suite on the real server
 * (NOVACRON_TEST_PG_URL, default postgres://postgres@127.0.0.1:5432/test) and a fresh
 * PGlite. The store suites run on both.
 */
import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll } from "vitest";
import type { DbLocation } from "../../src/cluster/store/db.js";
import { Store } from "../../src/cluster/store/store.js";

/** The admin URL the suites connect with to create their databases. */
export const TEST_PG_URL = process.env.NOVACRON_TEST_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test";

/** A database the suite owns and drops afterwards. */
export interface TestDatabase {
  engine: "postgres" | "pglite";
  location: DbLocation;
  /** A URL a separate process can use (postgres only). */
  url?: string;
  drop(): Promise<void>;
}

/** Creates an empty PostgreSQL database on the real server. */
export async function createPostgresDatabase(): Promise<TestDatabase> {
  const name = `novacron_test_${randomBytes(6).toString("hex")}`;
  const admin = new pg.Client({ connectionString: TEST_PG_URL });
  try {
    await admin.connect();
  } catch (err) {
    throw new Error(
      `The store suite needs the PostgreSQL server at ${TEST_PG_URL} (set NOVACRON_TEST_PG_URL to change it): ${(err as Error).message}`,
    );
  }
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(TEST_PG_URL);
  url.pathname = `/${name}`;
  return {
    engine: "postgres",
    location: { url: url.toString() },
    url: url.toString(),
    drop: async () => {
      const c = new pg.Client({ connectionString: TEST_PG_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/** An in-memory PGlite. */
export function createPgliteDatabase(): TestDatabase {
  return { engine: "pglite", location: { memory: true }, drop: async () => {} };
}

/** Both engines, for describe.each. */
export const ENGINES = [
  { engine: "postgres" as const, create: createPostgresDatabase },
  { engine: "pglite" as const, create: async () => createPgliteDatabase() },
];

/**
 * For the enclosing describe block: a Store on a fresh database from `create`, opened
 * before its tests and closed and dropped after them; `use` receives it.
 */
export function storePerSuite(
  create: () => Promise<TestDatabase> | TestDatabase,
  use: (store: Store) => void,
): void {
  let tdb: TestDatabase | undefined;
  let store: Store | undefined;
  beforeAll(async () => {
    tdb = await create();
    store = await Store.open(tdb.location);
    use(store);
  });
  afterAll(async () => {
    await store?.close();
    await tdb?.drop();
  });
}
