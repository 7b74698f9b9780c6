/**
 * The database connection NovaCron's store runs on: a PostgreSQL server through `pg`
 * (when a URL is given) or embedded PGlite in a data dir. Both sit behind one small
 * interface so every repository runs the same SQL on both.
 */
import { mkdir } from "node:fs/promises";
import { describeError, NovaError } from "../../lib/errors.js";

/** Something that runs parameterised SQL: the database or an open transaction. */
export interface ReadQueryable {
  /** Runs one statement with $1-style parameters and returns its rows. */
  query<R = Record<string, unknown>>(
    sql: string,
    params?: unknown[],
  ): Promise<{ rows: R[]; rowCount: number }>;
}

declare const writable: unique symbol;

/**
 * A handle that may write: the database itself or a transaction of `Store.write`. Store
 * functions that only read take a `ReadQueryable`; functions that write take a
 * `Queryable`, so passing `Store.read` to a writer is a compile error. The brand exists
 * only in the types.
 */
export interface Queryable extends ReadQueryable {
  readonly [writable]: true;
}

/** A database handle. */
export interface Db extends Queryable {
  /** Which engine this is, for logs and `/healthz`. */
  readonly kind: "postgres" | "pglite";
  /** Runs several statements separated by semicolons (migrations), without parameters. */
  exec(sql: string): Promise<void>;
  /** Runs `fn` in a transaction: committed when it returns, rolled back when it throws. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /** Closes the pool or the embedded database. */
  close(): Promise<void>;
}

/** Where the store lives. */
export type DbLocation = { url: string } | { dataDir: string } | { memory: true };

/** Opens the database: PostgreSQL when a URL is given, else PGlite in the data dir. */
export async function openDb(location: DbLocation): Promise<Db> {
  if ("url" in location) return openPostgres(location.url);
  return openPglite("dataDir" in location ? location.dataDir : undefined);
}

async function openPostgres(url: string): Promise<Db> {
  const pg = (await import("pg")).default;
  // bigint (int8) comes back as text by default; our bigints are byte counts and event
  // ids that fit in a double, and numbers keep both engines' rows identical.
  pg.types.setTypeParser(20, (v: string) => Number(v));
  const pool = new pg.Pool({ connectionString: url, max: 10 });
  pool.on("error", () => {
    // An idle client died (server restart); the pool replaces it on next use.
  });
  try {
    await pool.query("SELECT 1");
  } catch (err) {
    await pool.end().catch(() => {});
    throw new NovaError(
      "NOVA_STORE",
      `Failed connecting to PostgreSQL at ${redactUrl(url)}: ${describeError(err)}. Check DATABASE_URL and that the server is running.`,
      { cause: err },
    );
  }
  const run = async <R>(
    q: { query: (s: string, p?: unknown[]) => Promise<{ rows: unknown[]; rowCount: number | null }> },
    sql: string,
    params?: unknown[],
  ) => {
    try {
      const res = await q.query(sql, params);
      return { rows: res.rows as R[], rowCount: res.rowCount ?? 0 };
    } catch (err) {
      throw wrapSqlError(err);
    }
  };
  return dbHandle({
    kind: "postgres",
    query: (sql, params) => run(pool, sql, params),
    exec: async (sql) => {
      await run(pool, sql);
    },
    transaction: async (fn) => {
      const client = await pool.connect();
      // A checked-out client is the pool's no longer: when the server goes away between
      // two queries (the transaction awaits something else), the error would be emitted on
      // the client with nobody listening and end the process. Noted here, the transaction
      // fails on its next query, and the client is discarded rather than reused.
      let broken: Error | undefined;
      const onError = (err: Error) => {
        broken ??= err;
      };
      client.on("error", onError);
      try {
        await client.query("BEGIN");
        const result = await fn(txHandle({ query: (sql, params) => run(client, sql, params) }));
        await client.query("COMMIT");
        return result;
      } catch (err) {
        await client.query("ROLLBACK").catch((e: unknown) => {
          broken ??= e instanceof Error ? e : new Error(String(e));
        });
        throw err;
      } finally {
        client.off("error", onError);
        client.release(broken);
      }
    },
    close: () => pool.end(),
  });
}

async function openPglite(dataDir: string | undefined): Promise<Db> {
  const { PGlite } = await import("@electric-sql/pglite");
  if (dataDir) await mkdir(dataDir, { recursive: true });
  let db: InstanceType<typeof PGlite>;
  try {
    db = await PGlite.create(dataDir ?? "memory://");
  } catch (err) {
    throw new NovaError(
      "NOVA_STORE",
      `Failed opening the embedded database in ${dataDir}: ${describeError(err)}. Is another NovaCron server using this data dir?`,
      { cause: err },
    );
  }
  const run = async <R>(q: Pick<InstanceType<typeof PGlite>, "query">, sql: string, params?: unknown[]) => {
    try {
      const res = await q.query<R>(sql, params);
      return { rows: res.rows, rowCount: res.affectedRows ?? res.rows.length };
    } catch (err) {
      throw wrapSqlError(err);
    }
  };
  return dbHandle({
    kind: "pglite",
    query: (sql, params) => run(db, sql, params),
    exec: async (sql) => {
      try {
        await db.exec(sql);
      } catch (err) {
        throw wrapSqlError(err);
      }
    },
    transaction: (fn) =>
      db.transaction((tx) => fn(txHandle({ query: (sql, params) => run(tx, sql, params) }))),
    close: () => db.close(),
  });
}

/** Marks the database handle as one that may write (the brand is type-only; see Queryable). */
function dbHandle(handle: Omit<Db, typeof writable>): Db {
  return handle as Db;
}

/** Marks a transaction handle as one that may write. */
function txHandle(handle: ReadQueryable): Queryable {
  return handle as Queryable;
}

/** SQLSTATE of a PostgreSQL error (both drivers expose `code`). */
export function sqlState(err: unknown): string | undefined {
  const cause = err instanceof NovaError ? err.cause : err;
  if (cause && typeof cause === "object" && "code" in cause && typeof cause.code === "string")
    return cause.code;
  return undefined;
}

function wrapSqlError(err: unknown): NovaError {
  if (err instanceof NovaError) return err;
  return new NovaError("NOVA_STORE", `Database error: ${describeError(err)}`, { cause: err });
}

function redactUrl(url: string): string {
  return url.replace(/\/\/([^:/@]+):[^@]*@/, "//$1:***@");
}
