/**
 * A PostgreSQL server of the suite's own (Debian's postgresql binaries, initdb in a temp
 * dir, unix socket only), so that a fault suite can stop and restart a database without
 * touching the shared server the other suites use. The socket is a file, so processes in
 * other network namespaces reach it too.
 */
import { execFile } from "node:child_process";
import { chown, mkdtemp, rm } from "node:fs/promises";
import { promisify } from "node:util";
import pg from "pg";

const run = promisify(execFile);
const BIN = "/usr/lib/postgresql/15/bin";
const PORT = 5599;

/** One private PostgreSQL server. */
export class PrivatePostgres {
  private constructor(readonly dir: string) {}

  /** initdb + start; as the postgres user (initdb refuses root). */
  static async start(): Promise<PrivatePostgres> {
    const dir = await mkdtemp("/tmp/nc-pg-");
    const { stdout } = await run("id", ["-u", "postgres"]);
    const uid = Number(stdout.trim());
    await chown(dir, uid, uid);
    await run("runuser", [
      "-u",
      "postgres",
      "--",
      `${BIN}/initdb`,
      "-D",
      `${dir}/data`,
      "-A",
      "trust",
      "-U",
      "postgres",
    ]);
    const p = new PrivatePostgres(dir);
    await p.startServer();
    return p;
  }

  /** A URL for database `db` over the unix socket. */
  url(db: string): string {
    return `postgresql://postgres@/${db}?host=${encodeURIComponent(this.dir)}&port=${PORT}`;
  }

  /** Creates database `db`. */
  async createDatabase(db: string): Promise<string> {
    const c = new pg.Client({ connectionString: this.url("postgres") });
    await c.connect();
    await c.query(`CREATE DATABASE ${db}`);
    await c.end();
    return this.url(db);
  }

  /** Runs one statement in `db`. */
  async query<R>(db: string, sql: string, params: unknown[] = []): Promise<R[]> {
    const c = new pg.Client({ connectionString: this.url(db) });
    await c.connect();
    try {
      return (await c.query(sql, params)).rows as R[];
    } finally {
      await c.end();
    }
  }

  async startServer(): Promise<void> {
    await run("runuser", [
      "-u",
      "postgres",
      "--",
      `${BIN}/pg_ctl`,
      "-D",
      `${this.dir}/data`,
      "-l",
      `${this.dir}/log`,
      "-w",
      "-o",
      `-p ${PORT} -k ${this.dir} -c listen_addresses=''`,
      "start",
    ]);
  }

  /** Stops the server (fast: open connections are cut, as in a crash of the clients' view). */
  async stopServer(): Promise<void> {
    await run("runuser", [
      "-u",
      "postgres",
      "--",
      `${BIN}/pg_ctl`,
      "-D",
      `${this.dir}/data`,
      "-w",
      "-m",
      "fast",
      "stop",
    ]);
  }

  async destroy(): Promise<void> {
    await this.stopServer().catch(() => {});
    await rm(this.dir, { recursive: true, force: true });
  }
}
