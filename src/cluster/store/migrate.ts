/**
 * Applies the numbered SQL migrations in src/cluster/sql (`000001_name.sql` …) in order,
 * each in its own transaction, recording them in `schema_migrations`. Concurrent servers
 * serialise on an advisory lock; a database newer than this code is refused rather than
 * used (after graphile-worker's migrate.ts).
 */
import { readdir, readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { NovaError } from "../../lib/errors.js";
import type { Db } from "./db.js";

/** One migration file. */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

const MIGRATION_FILE = /^(\d{6})_([a-z0-9_]+)\.sql$/;
const MIGRATION_LOCK_KEY = 7_311_001; // arbitrary, constant: "novacron migrations"

/** Directory holding the SQL files (copied next to the build output by `npm run build`). */
export const MIGRATIONS_DIR = fileURLToPath(new URL("../sql/", import.meta.url));

/** Reads and orders the migration files in `dir`. */
export async function loadMigrations(dir = MIGRATIONS_DIR): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith(".sql")).sort();
  const migrations: Migration[] = [];
  for (const file of files) {
    const match = MIGRATION_FILE.exec(file);
    if (!match) throw new NovaError("NOVA_INTERNAL", `Migration file ${file} is not named NNNNNN_name.sql`);
    const version = Number(match[1]);
    if (version !== migrations.length + 1) {
      throw new NovaError(
        "NOVA_INTERNAL",
        `Migration ${file} is out of sequence: expected version ${migrations.length + 1}`,
      );
    }
    migrations.push({ version, name: match[2]!, sql: await readFile(`${dir}/${file}`, "utf8") });
  }
  return migrations;
}

/** Brings the schema up to date; returns the versions it applied. */
export async function migrate(db: Db, migrations?: Migration[]): Promise<number[]> {
  const all = migrations ?? (await loadMigrations());
  await db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
  )`);
  const applied: number[] = [];
  for (const m of all) {
    const didApply = await db.transaction(async (tx) => {
      await tx.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK_KEY]);
      const { rows } = await tx.query<{ version: number }>(
        "SELECT max(version) AS version FROM schema_migrations",
      );
      const current = rows[0]?.version ?? 0;
      const latest = all[all.length - 1]?.version ?? 0;
      if (current > latest) {
        throw new NovaError(
          "NOVA_SCHEMA_TOO_NEW",
          `The database schema is at version ${current} but this NovaCron only knows up to ${latest}. Upgrade NovaCron before using this database.`,
          { details: { databaseVersion: current, codeVersion: latest } },
        );
      }
      if (m.version <= current) return false;
      // Statements one by one: pg's extended protocol (used inside a transaction with
      // parameters elsewhere) and PGlite both accept a multi-statement simple query here.
      for (const statement of splitStatements(m.sql)) await tx.query(statement);
      await tx.query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", [m.version, m.name]);
      return true;
    });
    if (didApply) applied.push(m.version);
  }
  return applied;
}

/** The schema version the database is at (0 when none). */
export async function schemaVersion(db: Db): Promise<number> {
  const { rows } = await db.query<{ version: number | null }>(
    "SELECT max(version) AS version FROM schema_migrations",
  );
  return rows[0]?.version ?? 0;
}

/**
 * Splits a migration into statements at semicolons that end a line, skipping comments.
 * Migrations are our own files: no dollar-quoted bodies with inner `;\n`, which this
 * deliberately does not handle.
 */
export function splitStatements(sql: string): string[] {
  const withoutComments = sql
    .split("\n")
    .map((line) => line.replace(/--.*$/, ""))
    .join("\n");
  return withoutComments
    .split(/;\s*(?:\n|$)/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}
