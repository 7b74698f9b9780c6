/**
 * A PostgreSQL server of the suite's own (Debian's postgresql binaries, initdb in a temp
 * dir), so that a fault suite can stop and restart a database without touching the shared
 * server the other suites use. Its unix socket is a file, so processes in other network
 * namespaces reach it too; with `tcpPort` it also listens on 127.0.0.1.
 */
import { execFile } from "node:child_process";
import { chown, mkdtemp, rm } from "node:fs/promises";
import { promisify } from "node:util";
import pg from "pg";

const run = promisify(execFile);
const SOCKET_PORT = 5599;

async function binDir(): Promise<string> {
  const { stdout } = await run("bash", ["-c", "ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1"]);
  return stdout.trim();
}

function asPostgres(cmd: string, args: string[]) {
  return run("runuser", ["-u", "postgres", "--", cmd, ...args], { timeout: 60_000 });
}

/** One private PostgreSQL server. */
export class PrivatePostgres {
  private constructor(
    readonly dir: string,
    private readonly bin: string,
    private readonly tcpPort: number | undefined,
  ) {}

  /** initdb + start, as the postgres user (initdb refuses root). */
  static async start(opts: { tcpPort?: number } = {}): Promise<PrivatePostgres> {
    const dir = await mkdtemp("/tmp/nc-pg-");
    const uid = Number((await run("id", ["-u", "postgres"])).stdout.trim());
    const gid = Number((await run("id", ["-g", "postgres"])).stdout.trim());
    await chown(dir, uid, gid);
    const bin = await binDir();
    await asPostgres(`${bin}/initdb`, ["-D", `${dir}/data`, "-A", "trust", "-U", "postgres"]);
    const p = new PrivatePostgres(dir, bin, opts.tcpPort);
    await p.startServer();
    return p;
  }

  private get port(): number {
    return this.tcpPort ?? SOCKET_PORT;
  }

  /** A URL for database `db` over the unix socket. */
  url(db: string): string {
    return `postgresql://postgres@/${db}?host=${encodeURIComponent(this.dir)}&port=${this.port}`;
  }

  /** A URL for database `db` over TCP (only with `tcpPort`). */
  tcpUrl(db: string): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${db}`;
  }

  /** Creates database `db`; returns its socket URL. */
  async createDatabase(db: string): Promise<string> {
    const c = new pg.Client({ connectionString: this.url("postgres") });
    await c.connect();
    await c.query(`CREATE DATABASE ${db}`);
    await c.end();
    return this.url(db);
  }

  private get options(): string {
    return `-p ${this.port} -k ${this.dir} -c listen_addresses=${this.tcpPort ? "127.0.0.1" : "''"}`;
  }

  async startServer(): Promise<void> {
    await asPostgres(`${this.bin}/pg_ctl`, [
      "-D",
      `${this.dir}/data`,
      "-l",
      `${this.dir}/log`,
      "-w",
      "-o",
      this.options,
      "start",
    ]);
  }

  /** Stops the server, fast: open connections are cut. */
  async stopServer(): Promise<void> {
    await asPostgres(`${this.bin}/pg_ctl`, ["-D", `${this.dir}/data`, "-w", "-m", "fast", "stop"]);
  }

  /**
   * Stops (fast) and starts again. Not `pg_ctl restart`: it takes no log file, so the new
   * postmaster kept pg_ctl's output pipe open and the call returned only at its 60 s timeout.
   */
  async restartServer(): Promise<void> {
    await this.stopServer();
    await this.startServer();
  }

  async destroy(): Promise<void> {
    await asPostgres(`${this.bin}/pg_ctl`, ["-D", `${this.dir}/data`, "-m", "immediate", "-w", "stop"]).catch(
      () => {},
    );
    await rm(this.dir, { recursive: true, force: true });
  }
}
