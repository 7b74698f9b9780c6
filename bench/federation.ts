/**
 * `npm run bench:federation`: a federation of N clusters across an emulated WAN (issue 14).
 * Each cluster is one `novacron server` with its own PostgreSQL database, running inside
 * its own network namespace; the namespaces are the sites of a star (src/testing/wanem/
 * star.ts), each site joined to a hub by its own wanem link, with every link one half of
 * the profile so that site to site is the profile (default `wan`: 100 Mbit/s, 50 ms RTT,
 * 0.1 % loss; two links of 100 Mbit/s, 25 ms RTT, 0.05 % loss). Every pair of clusters is
 * peered (a full mesh, N(N−1)/2 peerings), so each pulls from every other over DWCP with
 * mutual TLS across the emulated links; the bench calls the servers' APIs and reads their
 * databases over an unemulated management network and the PostgreSQL socket.
 *
 * For each cluster count, in one federation:
 *   1. idle     after the initial sync, an idle window: wire bytes per second (every
 *               link's counters: the Ethernet frames the sites sent, TLS, TCP and IP
 *               included) and the ASS batch bytes the servers pulled and applied
 *               (novacron_federation_sync_bytes_total{direction="received"}; `sent`
 *               counts a batch before it is sent, also one whose send fails, and is
 *               reported as served_bytes)
 *   2. changes  one change at a time, made through a cluster's API (POST
 *               /v1/hosts/:id/cordon, cordoned and uncordoned by turns, the clusters taking
 *               turns), timed from the call until every other cluster's database holds the
 *               changed record (polled every 10 ms); p50, p99, max against the 2 s target;
 *               wire bytes per change (gross: everything in the window; net: less the idle
 *               rate)
 *   3. converge every site cut off from the hub (or only the first, --partition one);
 *               --vms VMs inserted into the clusters' databases, split evenly, while cut;
 *               once every publisher has signed its share (its 5 s pass), the links heal
 *               and the bench times until every cluster holds every VM record, with the
 *               wire bytes from the heal until then
 *   4. loaded   the change measurement again, with the VMs in every cluster's records
 *
 *   --clusters LIST   cluster counts (default 3,5)
 *   --profile NAME    site-to-site profile (default wan)
 *   --changes N       changes per count (default 60)
 *   --loaded N        changes in step 4 (default 30)
 *   --idle S          idle window in seconds (default 30)
 *   --vms N           VMs across the federation (default 10000)
 *   --partition MODE  all | one (default all)
 *   --stall S         give up on convergence when no cluster gained a VM record for S
 *                     seconds (default 90); the row then says why (converge_error: the
 *                     servers' distinct federation errors since the heal) and step 4 is
 *                     skipped
 *   --quick           small numbers for a smoke run (10 changes, 5 loaded, 5 s idle, 600 VMs)
 *   --json            one JSON object per line instead of the table
 *
 * Needs root (network namespaces), gcc (wanem) and the local PostgreSQL on its socket
 * (/var/run/postgresql, or $NOVACRON_FEDBENCH_PGHOST); databases `fedbench_<pid>_<i>` are
 * created and dropped. The servers are the built `novacron` command (dist/; `npm run
 * bench:build` builds it), started with --no-exec-workers (the execution system has no
 * part in federation). Cleans up namespaces, processes, databases and data dirs on exit,
 * failure and SIGINT/SIGTERM; what a killed run left (namespaces, bridges, the databases
 * of this bench and of bench:federation-parts) is swept at the next start.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import pg from "pg";
import { ROOT } from "../src/demo/local-cluster.js";
import { QEMU_10_0_2 } from "../src/lib/qemu-info.test-util.js";
import { type ClusterFetch, clusterFetch } from "../src/security/tls-client.js";
import { emulatorUnavailableReason } from "../src/testing/wanem/netns.js";
import { type StarLinkStats, WanStar } from "../src/testing/wanem/star.js";
import { printTable } from "./table.js";

const BIN = path.join(ROOT, "bin", "novacron.js");
const PGHOST = process.env.NOVACRON_FEDBENCH_PGHOST ?? "/var/run/postgresql";
const API_PORT = 7700;
const FED_PORT = 7701;
const TARGET_P99_MS = 2000;
const HOSTS_PER_CLUSTER = 8;

interface Options {
  clusters: number[];
  profile: string;
  changes: number;
  loaded: number;
  idleS: number;
  vms: number;
  partition: "all" | "one";
  stallS: number;
  json: boolean;
  quick: boolean;
}

function options(): Options {
  const { values } = parseArgs({
    options: {
      clusters: { type: "string", default: "3,5" },
      profile: { type: "string", default: "wan" },
      changes: { type: "string" },
      loaded: { type: "string" },
      idle: { type: "string" },
      vms: { type: "string" },
      partition: { type: "string", default: "all" },
      stall: { type: "string" },
      quick: { type: "boolean", default: false },
      json: { type: "boolean", default: false },
    },
  });
  const quick = values.quick ?? false;
  const num = (v: string | undefined, dflt: number, quickDflt: number, what: string): number => {
    const n = v === undefined ? (quick ? quickDflt : dflt) : Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${what} needs a whole number, not ${v}`);
    return n;
  };
  const clusters = values.clusters!.split(",").map(Number);
  if (clusters.some((c) => !Number.isInteger(c) || c < 2 || c > 20))
    throw new Error(`--clusters takes counts from 2 to 20, not ${values.clusters}`);
  if (values.partition !== "all" && values.partition !== "one")
    throw new Error(`--partition is all or one, not ${values.partition}`);
  return {
    clusters,
    profile: values.profile!,
    changes: num(values.changes, 60, 10, "changes"),
    loaded: num(values.loaded, 30, 5, "loaded"),
    idleS: num(values.idle, 30, 5, "idle"),
    vms: num(values.vms, 10_000, 600, "vms"),
    partition: values.partition,
    stallS: num(values.stall, 90, 60, "stall"),
    json: values.json ?? false,
    quick,
  };
}

// ---- cleanup -------------------------------------------------------------------------------

const cleanups: (() => Promise<unknown>)[] = [];
/** Cleanups popped and still running: a signal's cleanup waits for them too before exiting. */
const running = new Set<Promise<unknown>>();

/** Runs the cleanups registered after the first `downTo`, newest first. */
async function runCleanups(downTo: number): Promise<void> {
  while (cleanups.length > downTo) {
    const f = cleanups.pop()!;
    const p = f().catch((err) => console.error(`cleanup: ${(err as Error).message}`));
    running.add(p);
    await p;
    running.delete(p);
  }
}

/** Runs every cleanup, also waiting for those another caller is running. */
async function cleanUp(): Promise<void> {
  await runCleanups(0);
  await Promise.all([...running]);
}

let interrupted = false;
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    if (interrupted) return;
    interrupted = true;
    console.error(`${sig}: cleaning up`);
    void cleanUp().finally(() => process.exit(130));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Progress on stderr (the table or the JSON lines go to stdout). */
function log(msg: string): void {
  console.error(`[${new Date().toISOString().slice(11, 23)}] ${msg}`);
}

// ---- one cluster ---------------------------------------------------------------------------

interface Cluster {
  index: number;
  name: string;
  ns: string;
  addr: string;
  db: string;
  pool: pg.Pool;
  dir: string;
  proc: ChildProcess;
  output: string[];
  exited: Promise<void>;
  apiBase: string;
  fetch: ClusterFetch;
  token: string;
  /** Its cluster id (the origin of its records). */
  id: string;
  /** The host whose cordon the change measurement flips. */
  benchHost: { id: string; name: string; cordoned: boolean };
  /** Its share of the VMs (step 3). */
  vms: number;
}

async function admin<T extends pg.QueryResultRow>(sql: string): Promise<pg.QueryResult<T>> {
  const c = new pg.Client({ host: PGHOST, user: "postgres", database: "postgres" });
  await c.connect();
  try {
    return await c.query<T>(sql);
  } finally {
    await c.end();
  }
}

/** Drops the databases of earlier runs whose process is gone (killed before it could clean up). */
async function sweepStaleDatabases(): Promise<void> {
  const { rows } = await admin<{ datname: string }>(
    "SELECT datname FROM pg_database WHERE datname LIKE 'fedbench\\_%' OR datname LIKE 'fedparts\\_%'",
  );
  for (const { datname } of rows) {
    const pid = Number(/^fed(?:bench|parts)_(\d+)_/.exec(datname)?.[1]);
    if (!pid || pid === process.pid) continue;
    try {
      process.kill(pid, 0);
      continue;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EPERM") continue;
    }
    await admin(`DROP DATABASE IF EXISTS ${datname} WITH (FORCE)`);
  }
}

async function api<T>(c: Cluster, method: string, route: string, body?: unknown): Promise<T> {
  const res = await c.fetch(`${c.apiBase}${route}`, {
    method,
    headers: {
      authorization: `Bearer ${c.token}`,
      ...(body !== undefined ? { "content-type": "application/json" } : {}),
    },
    body: body !== undefined ? JSON.stringify(body) : null,
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${c.name}: ${method} ${route}: HTTP ${res.status} ${text.slice(0, 500)}`);
  return (text ? JSON.parse(text) : {}) as T;
}

async function startCluster(star: WanStar, index: number, work: string): Promise<Cluster> {
  const site = star.sites[index]!;
  const name = `site-${index + 1}`;
  const db = `fedbench_${process.pid}_${index + 1}`;
  await admin(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  await admin(`CREATE DATABASE ${db}`);
  cleanups.push(() => admin(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`));
  const dir = path.join(work, name);
  const proc = spawn(
    "ip",
    [
      "netns",
      "exec",
      site.ns,
      process.execPath,
      BIN,
      "server",
      "--data-dir",
      dir,
      "--listen",
      `0.0.0.0:${API_PORT}`,
      "--federation-port",
      String(FED_PORT),
      "--advertise-host",
      site.addr,
      "--cluster-name",
      name,
      "--database-url",
      `postgresql://postgres@/${db}?host=${encodeURIComponent(PGHOST)}`,
      "--no-exec-workers",
    ],
    {
      cwd: ROOT,
      env: { ...process.env, NOVACRON_LOG_LEVEL: process.env.NOVACRON_LOG_LEVEL ?? "warn" },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  const output: string[] = [];
  const collect = (chunk: Buffer) => {
    for (const line of chunk.toString().split("\n")) if (line) output.push(line);
    if (output.length > 2000) output.splice(0, output.length - 2000);
  };
  proc.stdout!.on("data", collect);
  proc.stderr!.on("data", collect);
  const exited = new Promise<void>((r) => proc.once("exit", () => r()));
  cleanups.push(async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill("SIGTERM");
    const t = setTimeout(() => proc.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(t);
  });
  const deadline = Date.now() + 60_000;
  while (!output.some((l) => l.includes("NovaCron server listening"))) {
    if (proc.exitCode !== null) throw new Error(`${name} exited: ${output.slice(-20).join("\n")}`);
    if (Date.now() > deadline) throw new Error(`${name} did not start: ${output.slice(-20).join("\n")}`);
    await sleep(100);
  }
  const caPem = await readFile(path.join(dir, "pki", "ca.crt"), "utf8");
  const token = (await readFile(path.join(dir, "admin.token"), "utf8")).trim();
  const pool = new pg.Pool({ host: PGHOST, user: "postgres", database: db, max: 2 });
  cleanups.push(() => pool.end());
  const id = (await pool.query<{ id: string }>("SELECT id FROM cluster_info")).rows[0]!.id;
  return {
    index,
    name,
    ns: site.ns,
    addr: site.addr,
    db,
    pool,
    dir,
    proc,
    output,
    exited,
    apiBase: `https://${site.mgmt}:${API_PORT}`,
    fetch: clusterFetch({ caPem }, { role: "server" }),
    token,
    id,
    benchHost: { id: "", name: "", cordoned: false },
    vms: 0,
  };
}

/** A cluster's own fleet: one image and some hosts, dead (no agent runs), so nothing moves by itself. */
async function seedFleet(c: Cluster): Promise<void> {
  await c.pool.query(
    `INSERT INTO images (id, name, disk_digest, disk_format, disk_virtual_bytes)
     VALUES (gen_random_uuid(), 'debian-12', 'sha256:' || repeat('ab', 32), 'qcow2', 2147483648)`,
  );
  await c.pool.query(
    `INSERT INTO hosts (id, name, agent_url, agent_version, accel, vcpus, memory_mib, liveness, qemu)
     SELECT gen_random_uuid(), $1 || '-h' || lpad(g::text, 2, '0'), 'https://10.1.0.' || g || ':7800', '0.1.0',
            'kvm', 64, 262144, 'dead', $3::jsonb
       FROM generate_series(1, $2) g`,
    [c.name, HOSTS_PER_CLUSTER, JSON.stringify(QEMU_10_0_2)],
  );
  const h = await c.pool.query<{ id: string; name: string }>(
    "SELECT id, name FROM hosts ORDER BY name LIMIT 1",
  );
  c.benchHost = { id: h.rows[0]!.id, name: h.rows[0]!.name, cordoned: false };
}

/** Inserts `count` VMs into a cluster, spread over its hosts, as the API would have left them running. */
async function seedVms(c: Cluster, count: number): Promise<void> {
  await c.pool.query(
    `WITH h AS (SELECT array_agg(id ORDER BY name) AS ids FROM hosts),
          i AS (SELECT id FROM images LIMIT 1)
     INSERT INTO vms (id, name, image_id, vcpus, memory_mib, desired_state, state, host_id)
     SELECT gen_random_uuid(), $1 || '-vm' || lpad(g::text, 5, '0'), i.id, 2, 2048, 'running', 'running',
            h.ids[1 + g % array_length(h.ids, 1)]
       FROM generate_series(1, $2) g, h, i`,
    [c.name, count],
  );
}

// ---- observations --------------------------------------------------------------------------

/** The bytes the sites sent into the WAN (every link's site-to-hub direction, Ethernet frames). */
function wireBytes(stats: StarLinkStats[] | null): number {
  return (stats ?? []).reduce((sum, l) => sum + l.up.rx_bytes, 0);
}

interface Metrics {
  sent: number;
  received: number;
  records: Record<string, number>;
}

async function metricsOf(c: Cluster): Promise<Metrics> {
  const res = await c.fetch(`${c.apiBase}/metrics`, { headers: { authorization: `Bearer ${c.token}` } });
  const text = await res.text();
  const m: Metrics = { sent: 0, received: 0, records: {} };
  for (const line of text.split("\n")) {
    let x = /^novacron_federation_sync_bytes_total\{direction="(\w+)"\} (\S+)/.exec(line);
    if (x) {
      if (x[1] === "sent") m.sent += Number(x[2]);
      if (x[1] === "received") m.received += Number(x[2]);
      continue;
    }
    x = /^novacron_federation_records_received_total\{outcome="(\w+)"\} (\S+)/.exec(line);
    if (x) m.records[x[1]!] = (m.records[x[1]!] ?? 0) + Number(x[2]);
  }
  return m;
}

async function allMetrics(cs: Cluster[]): Promise<Metrics> {
  const total: Metrics = { sent: 0, received: 0, records: {} };
  for (const m of await Promise.all(cs.map(metricsOf))) {
    total.sent += m.sent;
    total.received += m.received;
    for (const [k, v] of Object.entries(m.records)) total.records[k] = (total.records[k] ?? 0) + v;
  }
  return total;
}

function diffMetrics(a: Metrics, b: Metrics): Metrics {
  const records: Record<string, number> = {};
  for (const k of new Set([...Object.keys(a.records), ...Object.keys(b.records)]))
    records[k] = (b.records[k] ?? 0) - (a.records[k] ?? 0);
  return { sent: b.sent - a.sent, received: b.received - a.received, records };
}

interface Snapshot {
  at: number;
  wire: number;
  packets: number;
  metrics: Metrics;
}

async function snapshot(star: WanStar, cs: Cluster[]): Promise<Snapshot> {
  const [stats, metrics] = await Promise.all([star.stats(), allMetrics(cs)]);
  const packets = (stats ?? []).reduce((sum, l) => sum + l.up.rx_pkts, 0);
  return { at: performance.now(), wire: wireBytes(stats), packets, metrics };
}

/** The distinct federation errors the servers logged since `mark` (their output line counts), with counts. */
function serverErrors(cs: Cluster[], mark: number[]): string {
  const seen = new Map<string, number>();
  for (const [i, c] of cs.entries()) {
    for (const line of c.output.slice(mark[i])) {
      let err: unknown;
      try {
        err = (JSON.parse(line) as { err?: unknown }).err;
      } catch {
        continue;
      }
      if (typeof err === "string") seen.set(err, (seen.get(err) ?? 0) + 1);
    }
  }
  if (seen.size === 0) return "nothing";
  return [...seen].map(([e, n]) => `${n}x "${e}"`).join("; ");
}

/** A cluster's own records: kind/id → version and body. */
async function ownRecords(c: Cluster): Promise<Map<string, { version: number; body: string }>> {
  const { rows } = await c.pool.query<{ kind: string; id: string; version: string; body_json: string }>(
    "SELECT kind, id, version, body_json FROM fed_records WHERE origin = $1",
    [c.id],
  );
  return new Map(rows.map((r) => [`${r.kind}/${r.id}`, { version: Number(r.version), body: r.body_json }]));
}

/** True when every cluster holds every origin's records up to that origin's own sequence. */
async function inSync(cs: Cluster[]): Promise<boolean> {
  const seqs = await Promise.all(
    cs.map(async (c) =>
      Number((await c.pool.query<{ seq: string }>("SELECT seq FROM cluster_info")).rows[0]!.seq),
    ),
  );
  for (const c of cs) {
    const { rows } = await c.pool.query<{ origin: string; top: string }>(
      "SELECT origin, max(version) AS top FROM fed_records GROUP BY origin",
    );
    const held = new Map(rows.map((r) => [r.origin, Number(r.top)]));
    for (const [i, o] of cs.entries()) if ((held.get(o.id) ?? 0) !== seqs[i]) return false;
  }
  return true;
}

async function waitFor(
  what: string,
  ms: number,
  check: () => Promise<boolean>,
  everyMs = 100,
): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    if (await check()) return performance.now() - t0;
    if (performance.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

/**
 * `count` changes, one at a time: cordon flips on the clusters' bench hosts, by turns.
 * Each is timed from the API call until every other cluster's database holds it.
 */
async function measureChanges(cs: Cluster[], count: number): Promise<number[]> {
  const out: number[] = [];
  for (let k = 0; k < count; k++) {
    const c = cs[k % cs.length]!;
    const want = !c.benchHost.cordoned;
    const others = cs.filter((x) => x !== c);
    const t0 = performance.now();
    await api(c, "POST", `/v1/hosts/${c.benchHost.name}/cordon`, { cordoned: want });
    c.benchHost.cordoned = want;
    const pending = new Set(others);
    for (;;) {
      for (const x of [...pending]) {
        const { rows } = await x.pool.query<{ c: boolean }>(
          "SELECT (body->>'cordoned')::boolean AS c FROM fed_records WHERE origin = $1 AND kind = 'host' AND id = $2",
          [c.id, c.benchHost.id],
        );
        if (rows[0]?.c === want) pending.delete(x);
      }
      if (pending.size === 0) break;
      if (performance.now() - t0 > 60_000)
        throw new Error(
          `change ${k} from ${c.name} did not reach ${[...pending].map((x) => x.name).join(", ")}`,
        );
      await sleep(10);
    }
    out.push(performance.now() - t0);
    if ((k + 1) % 10 === 0) log(`  ${k + 1}/${count} changes, last ${Math.round(out[out.length - 1]!)} ms`);
    await sleep(100 + Math.random() * 200);
  }
  return out;
}

function summary(lat: number[]): { p50: number; p99: number; max: number } {
  const s = [...lat].sort((a, b) => a - b);
  return {
    p50: Math.round(percentile(s, 0.5)),
    p99: Math.round(percentile(s, 0.99)),
    max: Math.round(s[s.length - 1] ?? Number.NaN),
  };
}

async function vmCounts(cs: Cluster[]): Promise<number[]> {
  return Promise.all(
    cs.map(async (c) =>
      Number(
        (
          await c.pool.query<{ n: string }>(
            "SELECT count(*) AS n FROM fed_records WHERE kind = 'vm' AND NOT deleted",
          )
        ).rows[0]!.n,
      ),
    ),
  );
}

// ---- one federation ------------------------------------------------------------------------

async function runFederation(o: Options, n: number): Promise<Record<string, unknown>> {
  const mark = cleanups.length;
  log(`${n} clusters: building the star (${o.profile} site to site)`);
  const star = await WanStar.create({ sites: n, spec: o.profile, management: true });
  cleanups.push(() => star.close());
  const work = await mkdtemp("/tmp/nc-fedbench-");
  cleanups.push(() => rm(work, { recursive: true, force: true }));
  const cs: Cluster[] = [];
  try {
    for (let i = 0; i < n; i++) cs.push(await startCluster(star, i, work));
    for (const c of cs) await seedFleet(c);
    log(`${n} servers up; peering every pair`);
    const tPeer = performance.now();
    for (let i = 0; i < n; i++) {
      for (let j = i + 1; j < n; j++) {
        const { token } = await api<{ token: string }>(cs[j]!, "POST", "/v1/federation/tokens", {});
        await api(cs[i]!, "POST", "/v1/federation/peers", { token });
      }
    }
    const peeredMs = performance.now() - tPeer;
    // The fleets were inserted behind the publishers' backs: their next full pass signs them.
    await waitFor("every publisher to sign its fleet", 60_000, async () => {
      for (const c of cs) if ((await ownRecords(c)).size !== HOSTS_PER_CLUSTER + 2) return false;
      return true;
    });
    const syncMs = await waitFor("the initial sync", 120_000, () => inSync(cs), 200);
    log(`peered in ${Math.round(peeredMs)} ms, in sync ${Math.round(syncMs)} ms later`);

    // 1. idle
    await sleep(3000);
    const own0 = await Promise.all(cs.map(ownRecords));
    const idle0 = await snapshot(star, cs);
    await sleep(o.idleS * 1000);
    const idle1 = await snapshot(star, cs);
    const own1 = await Promise.all(cs.map(ownRecords));
    const idleRepublished: Record<string, number> = {};
    for (const [i, after] of own1.entries()) {
      for (const [key, r] of after) {
        const before = own0[i]!.get(key);
        if (before && before.version === r.version) continue;
        const kind = key.split("/")[0]!;
        idleRepublished[kind] = (idleRepublished[kind] ?? 0) + 1;
        if (process.env.NOVACRON_FEDBENCH_DEBUG)
          console.error(`${cs[i]!.name} republished ${key}:\n  ${before?.body}\n  ${r.body}`);
      }
    }
    const idleS = (idle1.at - idle0.at) / 1000;
    const idleRate = (idle1.wire - idle0.wire) / idleS;
    const idleSync = diffMetrics(idle0.metrics, idle1.metrics);
    log(`idle: ${idleRate.toFixed(0)} wire bytes/s over ${idleS.toFixed(1)} s`);

    // 2. changes
    const ch0 = await snapshot(star, cs);
    const lat = await measureChanges(cs, o.changes);
    await sleep(1000);
    const ch1 = await snapshot(star, cs);
    const chS = (ch1.at - ch0.at) / 1000;
    const chWire = ch1.wire - ch0.wire;
    const chSync = diffMetrics(ch0.metrics, ch1.metrics);
    const changes = summary(lat);
    log(`changes: p50 ${changes.p50} ms, p99 ${changes.p99} ms, max ${changes.max} ms`);

    // 3. partition, seed, heal, converge
    const cut = o.partition === "all" ? cs.map((c) => c.index) : [0];
    const tCut = performance.now();
    for (const i of cut) await star.cut(i);
    const per = Math.floor(o.vms / n);
    for (const c of cs) c.vms = per + (c.index < o.vms - per * n ? 1 : 0);
    const tSeed = performance.now();
    await Promise.all(cs.map((c) => seedVms(c, c.vms)));
    const seedMs = performance.now() - tSeed;
    const publishMs = await waitFor("every publisher to sign its VMs", 180_000, async () => {
      for (const c of cs) {
        const { rows } = await c.pool.query<{ n: string }>(
          "SELECT count(*) AS n FROM fed_records WHERE origin = $1 AND kind = 'vm' AND NOT deleted",
          [c.id],
        );
        if (Number(rows[0]!.n) !== c.vms) return false;
      }
      return true;
    });
    log(
      `cut; ${o.vms} VMs inserted in ${Math.round(seedMs)} ms, signed by their publishers ${Math.round(publishMs)} ms later`,
    );
    const heal0 = await snapshot(star, cs);
    for (const i of cut) await star.heal(i);
    const cutMs = performance.now() - tCut;
    const t0 = performance.now();
    const outputMark = cs.map((c) => c.output.length);
    const firstAt: (number | null)[] = cs.map(() => null);
    const doneAt: (number | null)[] = cs.map(() => null);
    let convergeError: string | null = null;
    let lastCounts: number[] = [];
    let lastProgress = 0;
    for (;;) {
      const counts = await vmCounts(cs);
      const now = performance.now() - t0;
      if (counts.some((x, i) => x !== lastCounts[i])) lastProgress = now;
      lastCounts = counts;
      for (const [i, c] of cs.entries()) {
        if (firstAt[i] === null && counts[i]! > c.vms) firstAt[i] = now;
        if (doneAt[i] === null && counts[i] === o.vms) doneAt[i] = now;
      }
      if (doneAt.every((d) => d !== null)) break;
      if (now - lastProgress > o.stallS * 1000) {
        convergeError = `no VM record arrived anywhere for ${o.stallS} s (held ${counts.join(", ")} of ${o.vms}, ${Math.round(now / 1000)} s after the heal); servers said: ${serverErrors(cs, outputMark)}`;
        log(convergeError);
        break;
      }
      await sleep(50);
    }
    const heal1 = await snapshot(star, cs);
    const convergeMs = convergeError ? null : Math.max(...(doneAt as number[]));
    const convergeWire = heal1.wire - heal0.wire;
    const convergeSync = diffMetrics(heal0.metrics, heal1.metrics);
    // Where the time went: when each cluster's peer VM records were written (its receiver's
    // transactions), relative to the heal.
    const healWall = Date.now() - (performance.now() - t0);
    const landing = await Promise.all(
      cs.map(async (c) => {
        const { rows } = await c.pool.query<{ first: Date | null; last: Date | null; n: string }>(
          "SELECT min(received_at) AS first, max(received_at) AS last, count(*) AS n FROM fed_records WHERE kind = 'vm' AND origin <> $1",
          [c.id],
        );
        const r = rows[0]!;
        return {
          cluster: c.name,
          first_ms: r.first ? Math.round(new Date(r.first).getTime() - healWall) : null,
          last_ms: r.last ? Math.round(new Date(r.last).getTime() - healWall) : null,
          records: Number(r.n),
        };
      }),
    );
    await sleep(5000);
    const settled = await snapshot(star, cs);
    if (convergeMs !== null)
      log(
        `converged ${Math.round(convergeMs)} ms after the heal, ${(convergeWire / 2 ** 20).toFixed(2)} MiB on the wire`,
      );

    // 4. changes with the VMs in place (not on a federation that did not converge)
    const loadedLat = o.loaded > 0 && convergeMs !== null ? await measureChanges(cs, o.loaded) : [];
    const loaded = summary(loadedLat);
    if (loadedLat.length > 0)
      log(`loaded changes: p50 ${loaded.p50} ms, p99 ${loaded.p99} ms, max ${loaded.max} ms`);

    const hop = star.linkSpec;
    return {
      clusters: n,
      profile: o.profile,
      topology: `star: each site one link to a hub, site to site two links = ${o.profile}${
        hop.kind === "emulated"
          ? ` (each link ${hop.ab.rateBps / 1e6} Mbit/s, RTT ${hop.ab.delayMs * 2} ms, loss ${(hop.ab.loss * 100).toFixed(4)} %)`
          : ""
      }`,
      path_rtt_ms: star.pathRttMs,
      changes: lat.length,
      p50_ms: changes.p50,
      p99_ms: changes.p99,
      max_ms: changes.max,
      target_p99_ms: TARGET_P99_MS,
      p99_met: changes.p99 <= TARGET_P99_MS,
      bytes_per_change: Math.round(chWire / lat.length),
      packets_per_change: Math.round((ch1.packets - ch0.packets) / lat.length),
      bytes_per_change_net: Math.round((chWire - idleRate * chS) / lat.length),
      sync_bytes_per_change: Math.round(chSync.received / lat.length),
      served_bytes_per_change: Math.round(chSync.sent / lat.length),
      change_records: chSync.records,
      idle_bytes_per_s: Math.round(idleRate),
      idle_sync_bytes_per_s: Math.round(idleSync.received / idleS),
      idle_records: idleSync.records,
      idle_republished: idleRepublished,
      idle_packets_per_s: Number(((idle1.packets - idle0.packets) / idleS).toFixed(1)),
      idle_window_s: Number(idleS.toFixed(1)),
      vms: o.vms,
      partition: o.partition,
      cut_ms: Math.round(cutMs),
      seed_ms: Math.round(seedMs),
      publish_ms: Math.round(publishMs),
      converge_ms: convergeMs === null ? null : Math.round(convergeMs),
      converge_error: convergeError,
      converge_first_ms: firstAt.some((x) => x !== null)
        ? Math.round(Math.min(...firstAt.filter((x): x is number => x !== null)))
        : null,
      converge_per_cluster_ms: doneAt.map((d) => (d === null ? null : Math.round(d))),
      converge_held: lastCounts,
      converge_bytes: convergeWire,
      converge_bytes_settled: Math.round(
        settled.wire - heal0.wire - idleRate * ((settled.at - heal1.at) / 1000),
      ),
      converge_sync_bytes: convergeSync.received,
      converge_served_bytes: convergeSync.sent,
      converge_records: convergeSync.records,
      converge_landing: landing,
      loaded_changes: loadedLat.length,
      loaded_p50_ms: loadedLat.length > 0 ? loaded.p50 : null,
      loaded_p99_ms: loadedLat.length > 0 ? loaded.p99 : null,
      loaded_max_ms: loadedLat.length > 0 ? loaded.max : null,
      peering_ms: Math.round(peeredMs),
      initial_sync_ms: Math.round(syncMs),
    };
  } catch (err) {
    // What the servers said last helps more than the bare error.
    for (const c of cs) console.error(`--- ${c.name}, last lines:\n${c.output.slice(-15).join("\n")}`);
    throw err;
  } finally {
    await runCleanups(mark);
  }
}

async function main(): Promise<void> {
  const o = options();
  const why = emulatorUnavailableReason();
  if (why) {
    console.error(`bench:federation needs the WAN emulator: ${why}`);
    process.exit(2);
  }
  await sweepStaleDatabases();
  const rows: Record<string, unknown>[] = [];
  for (const n of o.clusters) {
    const row = await runFederation(o, n);
    rows.push(row);
    if (o.json) console.log(JSON.stringify(row));
  }
  if (!o.json) {
    const f = (x: unknown) => (x === null || x === undefined ? "-" : String(x));
    printTable(
      [
        "clusters",
        "changes",
        "p50 ms",
        "p99 ms",
        "max ms",
        "p99 target",
        "B/change",
        "idle B/s",
        "VMs",
        "converge s",
        "converge MiB",
        "loaded p99 ms",
      ],
      rows.map((r) => [
        f(r.clusters),
        f(r.changes),
        f(r.p50_ms),
        f(r.p99_ms),
        f(r.max_ms),
        `${r.target_p99_ms} (${r.p99_met ? "met" : "NOT met"})`,
        f(r.bytes_per_change),
        f(r.idle_bytes_per_s),
        f(r.vms),
        r.converge_ms === null ? "FAILED" : ((r.converge_ms as number) / 1000).toFixed(2),
        ((r.converge_bytes as number) / 2 ** 20).toFixed(2),
        f(r.loaded_p99_ms),
      ]),
    );
    console.log(`\n${rows[0]?.topology ?? ""}`);
    for (const r of rows) if (r.converge_error) console.log(`${r.clusters} clusters: ${r.converge_error}`);
  }
}

main()
  .catch(async (err) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : err);
    process.exitCode = 1;
  })
  .finally(async () => {
    await cleanUp();
  });
