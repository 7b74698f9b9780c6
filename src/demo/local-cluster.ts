/**
 * A real NovaCron cluster on this machine, used by the demo (`npm run demo`) and the
 * end-to-end suites: a server and agents as child processes of the built `novacron`
 * command, each with its own data dir and port, plus helpers to call the API, run the
 * CLI, restart or crash processes, and wait for conditions with a bound.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { readBoundedText } from "../lib/json-response.js";
import { waitFor } from "../lib/wait.js";
import { type ClusterFetch, clusterFetch } from "../security/tls-client.js";

/** One event as the server's SSE stream carries it (docs/api.md, "Events"). */
export interface StreamedEvent {
  id: number;
  at: string;
  type: string;
  resourceType: string;
  resourceId: string | null;
  data: Record<string, unknown>;
}

const execFileAsync = promisify(execFile);

/** Repository root: the nearest directory above this file with NovaCron's package.json
 * (this file runs from src/demo under vitest, dist/demo, and the benchmarks' build). */
export const ROOT = findRoot(path.dirname(fileURLToPath(import.meta.url)));

function findRoot(start: string): string {
  for (let dir = start; ; dir = path.dirname(dir)) {
    const pkg = path.join(dir, "package.json");
    if (existsSync(pkg) && readFileSync(pkg, "utf8").includes('"name": "novacron"')) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no NovaCron package.json above ${start}`);
  }
}
const BIN = path.join(ROOT, "bin", "novacron.js");

/** Builds (or reuses) the guest image; returns its manifest path. */
export async function guestImageManifest(): Promise<string> {
  const { stdout } = await execFileAsync(path.join(ROOT, "images", "build.sh"), [], {
    cwd: ROOT,
    maxBuffer: 1 << 24,
  });
  return stdout.trim().split("\n").pop()!;
}

/** A daemon we started. */
export interface Daemon {
  name: string;
  args: string[];
  proc: ChildProcess;
  output: string[];
  exited: Promise<number | null>;
}

/** Result of a CLI run. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** The cluster. */
export class LocalCluster {
  readonly daemons = new Map<string, Daemon>();
  serverUrl = "";
  adminToken = "";
  /** The cluster CA the server made (the demo and the suites trust it as `login` would pin it). */
  caPem = "";
  private fetchServer: ClusterFetch = fetch;

  private constructor(
    readonly dir: string,
    readonly serverPort: number,
  ) {}

  /** Creates a cluster dir (a fresh temp dir unless given); call startServer/startAgent next. */
  static async create(serverPort: number, dir?: string): Promise<LocalCluster> {
    if (!existsSync(path.join(ROOT, "dist", "cli", "main.js"))) {
      throw new Error("dist/ is missing: run `npm run build` (npm test and npm run demo do it)");
    }
    if (dir) await mkdir(dir, { recursive: true });
    return new LocalCluster(dir ?? (await mkdtemp("/tmp/nc-cluster-")), serverPort);
  }

  /**
   * Starts (or restarts) the server and waits for its banner. `listenHost` 0.0.0.0 also
   * serves agents in network namespaces on a management network; this process still uses
   * 127.0.0.1.
   */
  async startServer(
    extra: string[] = [],
    opts: {
      listenHost?: string;
      /** Run the server inside this network namespace. */
      netns?: string;
      /** The address this process reaches the server at (default 127.0.0.1). */
      reachAt?: string;
      /** Extra environment, e.g. libfaketime's LD_PRELOAD and FAKETIME for a clock that is off. */
      env?: Record<string, string>;
    } = {},
  ): Promise<Daemon> {
    const d = this.spawnDaemon(
      "server",
      [
        "server",
        "--data-dir",
        path.join(this.dir, "server"),
        "--listen",
        `${opts.listenHost ?? "127.0.0.1"}:${this.serverPort}`,
        // The suites pick agent ports next to the server's; the federation takes any free one.
        ...(extra.includes("--federation-port") ? [] : ["--federation-port", "0"]),
        ...extra,
      ],
      opts.netns,
      opts.env,
    );
    await waitFor(() => d.output.some((l) => l.includes("NovaCron server listening")), {
      timeoutMs: 60_000,
      what: "the server banner",
    });
    this.serverUrl = `https://${opts.reachAt ?? "127.0.0.1"}:${this.serverPort}`;
    this.adminToken = (await readFile(path.join(this.dir, "server", "admin.token"), "utf8")).trim();
    this.caPem = await readFile(this.caFile, "utf8");
    this.fetchServer = clusterFetch({ caPem: this.caPem }, { role: "server" });
    return d;
  }

  /**
   * Starts (or restarts) another server replica `name` on `port`, on the same database as
   * the first server (`extra` must carry the same `--database-url`): it gets the first
   * server's cluster CA and secrets key, as docs/operations.md ("Running replicas") says.
   * The API calls keep going to the server they went to; `useServer` points them elsewhere.
   */
  async startReplica(
    name: string,
    port: number,
    extra: string[] = [],
    opts: { env?: Record<string, string> } = {},
  ): Promise<Daemon> {
    const dataDir = path.join(this.dir, name);
    await mkdir(path.join(dataDir, "pki"), { recursive: true, mode: 0o700 });
    for (const f of ["pki/ca.crt", "pki/ca.key", "secrets.key"]) {
      const from = path.join(this.dir, "server", f);
      if (existsSync(from) && !existsSync(path.join(dataDir, f))) await copyFile(from, path.join(dataDir, f));
    }
    const d = this.spawnDaemon(
      name,
      [
        "server",
        "--data-dir",
        dataDir,
        "--listen",
        `127.0.0.1:${port}`,
        ...(extra.includes("--federation-port") ? [] : ["--federation-port", "0"]),
        ...extra,
      ],
      undefined,
      opts.env,
    );
    await waitFor(
      () => {
        if (d.proc.exitCode !== null)
          throw new Error(`replica ${name} exited: ${d.output.slice(-5).join("\n")}`);
        return d.output.some((l) => l.includes("NovaCron server listening"));
      },
      { timeoutMs: 60_000, what: `the banner of replica ${name}` },
    );
    return d;
  }

  /** Points api(), cli() and fetch() at another replica's URL (same CA and tokens). */
  pointAt(url: string): void {
    this.serverUrl = url;
  }

  /** The cluster CA certificate's file. */
  get caFile(): string {
    return path.join(this.dir, "server", "pki", "ca.crt");
  }

  /** A one-time join token for host `name` (`replace`: it may take over an existing host of that name). */
  async joinToken(name: string, replace = false): Promise<string> {
    const res = await this.api<{ token: string }>("POST", "/v1/join-tokens", { name, replace });
    if (res.status !== 200)
      throw new Error(`join token for ${name}: HTTP ${res.status} ${JSON.stringify(res.body)}`);
    return res.body.token;
  }

  /**
   * Starts (or restarts) an agent named `name` on `port`; with `netns`, inside that network
   * namespace (its QEMUs too), listening on `host` and joining the server at `serverUrl`;
   * with `qemuBinary`, running that QEMU (`--qemu-binary`, e.g. .cache/qemu-7.2's).
   */
  async startAgent(
    name: string,
    port: number,
    extra: string[] = [],
    opts: {
      netns?: string;
      host?: string;
      serverUrl?: string;
      qemuBinary?: string;
      /** Extra environment, e.g. NOVACRON_FAILPOINTS for the fault suites. */
      env?: Record<string, string>;
    } = {},
  ): Promise<Daemon> {
    // An agent that has joined keeps its identity; one that has not (or whose data dir is
    // new) gets a token, which may replace an earlier host of the same name.
    const joined = existsSync(path.join(this.agentDir(name), "pki", "identity.json"));
    const token = joined ? [] : ["--join-token", await this.joinToken(name, true)];
    const d = this.spawnDaemon(
      name,
      [
        "agent",
        "--server",
        opts.serverUrl ?? this.serverUrl,
        ...token,
        "--data-dir",
        this.agentDir(name),
        "--listen",
        `${opts.host ?? "127.0.0.1"}:${port}`,
        "--name",
        name,
        ...(opts.qemuBinary ? ["--qemu-binary", opts.qemuBinary] : []),
        ...extra,
      ],
      opts.netns,
      opts.env,
    );
    await waitFor(() => d.output.some((l) => l.includes("NovaCron agent")), {
      timeoutMs: 60_000,
      what: `agent ${name} to start`,
    });
    return d;
  }

  /** The pid of a running daemon, if it runs. */
  daemonPid(name: string): number | undefined {
    return this.daemons.get(name)?.proc.pid;
  }

  /** The last lines a running daemon wrote (stdout and stderr, at most 5000 kept). */
  daemonLog(name: string): readonly string[] {
    return this.daemons.get(name)?.output ?? [];
  }

  /** The agent's data dir. */
  agentDir(name: string): string {
    return path.join(this.dir, "agents", name);
  }

  /** Stops a daemon: SIGTERM (clean) or SIGKILL (crash); waits for it to exit. */
  async stop(name: string, signal: "SIGTERM" | "SIGKILL" = "SIGTERM"): Promise<void> {
    const d = this.daemons.get(name);
    if (!d) return;
    d.proc.kill(signal);
    await d.exited;
    this.daemons.delete(name);
  }

  /** A raw request to the server (`route` under its URL), trusting its cluster CA. */
  fetch(route: string, init?: RequestInit): Promise<Response> {
    return this.fetchServer(`${this.serverUrl}${route}`, init);
  }

  /** Calls the API with the admin token (or another). */
  async api<T = Record<string, unknown>>(
    method: string,
    route: string,
    body?: unknown,
    token: string | null = this.adminToken,
    rawBody?: string,
  ): Promise<{ status: number; body: T }> {
    const headers: Record<string, string> = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined || rawBody !== undefined) headers["content-type"] = "application/json";
    const res = await this.fetchServer(`${this.serverUrl}${route}`, {
      method,
      headers,
      body: rawBody ?? (body === undefined ? null : JSON.stringify(body)),
    });
    const text = await readBoundedText(res, { peer: "server" });
    return { status: res.status, body: (text ? JSON.parse(text) : {}) as T };
  }

  /** Runs the novacron CLI against this cluster. */
  async cli(args: string[], timeoutMs = 300_000): Promise<CliResult> {
    return new Promise((resolve) => {
      execFile(
        process.execPath,
        [BIN, ...args],
        {
          cwd: ROOT,
          timeout: timeoutMs,
          env: {
            ...process.env,
            NOVACRON_SERVER: this.serverUrl,
            NOVACRON_TOKEN: this.adminToken,
            NOVACRON_CA_FILE: this.caFile,
            NOVACRON_CONFIG: path.join(this.dir, "cli.json"),
          },
        },
        (err, stdout, stderr) => {
          const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
          resolve({ code, stdout, stderr });
        },
      );
    });
  }

  /**
   * The server's events after `since`, read from its SSE stream until it has replayed the
   * backlog (the server writes it at once; reading stops at the first quiet half second,
   * or after 3 s).
   */
  async events(since: number): Promise<StreamedEvent[]> {
    const controller = new AbortController();
    const res = await this.fetch(`/v1/events?since=${since}`, {
      headers: { authorization: `Bearer ${this.adminToken}` },
      signal: controller.signal,
    });
    const type = res.headers.get("content-type") ?? "";
    if (!type.includes("text/event-stream")) throw new Error(`/v1/events answered ${res.status} ${type}`);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = "";
    const deadline = Date.now() + 3000;
    while (Date.now() < deadline) {
      const chunk = await Promise.race([
        reader.read(),
        new Promise<null>((r) => setTimeout(() => r(null), 500)),
      ]);
      if (chunk === null || chunk.done) break;
      text += decoder.decode(chunk.value);
    }
    controller.abort();
    return text
      .split("\n\n")
      .map((block) => block.split("\n").find((l) => l.startsWith("data: ")))
      .filter((l): l is string => Boolean(l))
      .map((l) => JSON.parse(l.slice(6)) as StreamedEvent);
  }

  /** GET a VM (undefined when gone). */
  async vm(name: string): Promise<Record<string, unknown> | undefined> {
    const res = await this.api("GET", `/v1/vms/${name}`);
    return res.status === 404 ? undefined : res.body;
  }

  /** Waits until migration `id` has ended (completed, failed or cancelled); returns its resource. */
  async waitMigrationEnd<T extends { state: string }>(id: string, timeoutMs = 200_000): Promise<T> {
    return waitFor(
      async () => {
        const m = (await this.api<T>("GET", `/v1/migrations/${id}`)).body;
        return ["completed", "failed", "cancelled"].includes(m.state) ? m : undefined;
      },
      { timeoutMs, intervalMs: 250, what: `migration ${id} to end` },
    );
  }

  /** Waits until the VM is in `state`; fails early if it is failed instead. */
  async waitVmState(name: string, state: string, timeoutMs = 120_000): Promise<Record<string, unknown>> {
    return waitFor(
      async () => {
        const vm = await this.vm(name);
        if (vm?.state === "failed" && state !== "failed")
          throw new Error(`VM ${name} failed: ${String(vm.stateReason)}`);
        return vm?.state === state ? vm : undefined;
      },
      { timeoutMs, intervalMs: 250, what: `VM ${name} to be ${state}` },
    );
  }

  /** The VM's console lines. */
  async console(name: string, lines = 200): Promise<string[]> {
    const res = await this.api<{ lines: string[] }>("GET", `/v1/vms/${name}/console?lines=${lines}`);
    return res.status === 200 ? res.body.lines : [];
  }

  /** Waits for a console line matching `re` and returns its match. */
  async waitConsole(name: string, re: RegExp, timeoutMs = 120_000): Promise<RegExpMatchArray> {
    return waitFor(
      async () => {
        for (const line of (await this.console(name, 400)).reverse()) {
          const m = line.match(re);
          if (m) return m;
        }
        return undefined;
      },
      { timeoutMs, intervalMs: 500, what: `console of ${name} to show ${re}` },
    );
  }

  /** Kills any QEMU left running from this cluster's agents. */
  async killQemus(): Promise<void> {
    await killQemusUnder(this.dir);
  }

  /** Stops every daemon, kills any QEMU of this cluster, removes the dir. */
  async destroy(): Promise<void> {
    for (const name of [...this.daemons.keys()]) await this.stop(name, "SIGKILL");
    await killQemusUnder(this.dir);
    await rm(this.dir, { recursive: true, force: true });
  }

  private spawnDaemon(
    name: string,
    args: string[],
    netns?: string,
    env: Record<string, string> = {},
  ): Daemon {
    // `ip netns exec` execs the command in place, so the pid is still the daemon's.
    const [cmd, argv] = netns
      ? ["ip", ["netns", "exec", netns, process.execPath, BIN, ...args]]
      : [process.execPath, [BIN, ...args]];
    const proc = spawn(cmd, argv, {
      cwd: ROOT,
      env: { ...process.env, NOVACRON_LOG_LEVEL: process.env.NOVACRON_LOG_LEVEL ?? "warn", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const output: string[] = [];
    const collect = (chunk: Buffer) => {
      for (const line of chunk.toString().split("\n")) if (line) output.push(line);
      if (output.length > 5000) output.splice(0, output.length - 5000);
    };
    proc.stdout!.on("data", collect);
    proc.stderr!.on("data", collect);
    const exited = new Promise<number | null>((resolve) => proc.on("exit", (code) => resolve(code)));
    const d: Daemon = { name, args, proc, output, exited };
    this.daemons.set(name, d);
    return d;
  }
}

/** PIDs of QEMU processes whose command line mentions `dir`. */
export async function qemuPidsUnder(dir: string): Promise<number[]> {
  const { readdir } = await import("node:fs/promises");
  const pids: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = (await readFile(`/proc/${entry}/cmdline`, "utf8")).split("\0");
      if (cmdline[0]?.includes("qemu-system") && cmdline.some((a) => a.includes(dir)))
        pids.push(Number(entry));
    } catch {
      // the process went away while we looked
    }
  }
  return pids;
}

async function killQemusUnder(dir: string): Promise<void> {
  for (const pid of await qemuPidsUnder(dir)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}
