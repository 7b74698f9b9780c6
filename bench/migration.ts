/**
 * `npm run bench:migration`: live migration of a real guest between two agents in two
 * emulated sites (issue 5). The server runs in the initial namespace, the agents (and
 * their QEMUs) in the sites, all control traffic on an unemulated management network;
 * migration traffic (QEMU's stream, the NBD disk mirror, DWCP) crosses the emulated link.
 *
 * For each profile and workload, in one run and on one guest, the methods in order:
 *   qemu               QEMU's own transport, one TCP connection
 *   qemu-multifd       QEMU multifd, 4 channels, no compression (QEMU ≥ 9 detects zero
 *                      pages in the multifd threads)
 *   qemu-multifd-zstd  QEMU multifd, 4 channels, zstd
 *   qemu-postcopy      QEMU's transport, switched to post-copy in its first pass (only
 *                      when asked for with --method: the policy for guests that cannot
 *                      converge, docs/migration.md)
 *   dwcp               NovaCron's DWCP relay over mutual TLS (the default), the first DWCP
 *                      migration: the destination's cache is cold
 *   dwcp-again         the same VM again to the same host: the destination cache is warm
 *   auto               NovaCron's default transport choice (`auto`: DWCP or QEMU's own by the
 *                      path), only with --method; its row's detail says which it took
 *   dwcp-plaintext     dwcp again with both agents restarted with --dwcp-plaintext and their
 *                      DWCP caches emptied (cold, like dwcp): what TLS costs; the agents
 *                      are restarted with TLS afterwards
 *   bound              what must cross at the least, over the link rate, plus one round
 *                      trip: the guest's non-zero memory pages and the disk's top-layer
 *                      blocks (read from its QEMU and qcow2 just before), each distinct
 *                      page once (the encoder dedups), zstd at the encoder's highest level
 *                      (6); its detail carries the memory-only figure of earlier issues
 *                      (memory at zstd level 1, no disk, no round trip) as `memory_only_s`
 * Every method uses NovaCron's defaults (auto-converge on, 300 ms downtime limit, no
 * bandwidth cap). Migrations alternate direction; a return trip between methods is not
 * measured. A guest that fails its check after a method is replaced by a freshly booted
 * one before the next method. `dwcp` is cold every time: after any DWCP migration the
 * agents are restarted with their caches emptied before it.
 *
 *   --profile NAME      dc | metro | wan | intercontinental (repeatable; default dc, wan, intercontinental)
 *   --link SPEC         ad-hoc link, e.g. rate=20mbit,rtt=250ms,loss=1% (repeatable)
 *   --workload NAME     idle | web | db (repeatable; default all)
 *   --method NAME       subset of the methods above (repeatable; default all)
 *   --memory MiB        guest memory (default 1024)
 *   --timeout S         per migration (default 900)
 *   --repeat N          run the methods N times, in reverse order every other time (so no
 *                       method always follows the same one); a `median` row per method
 *                       gives the median, min and max of its runs (default 1)
 *   --port N            server port; agents use N+1, N+2 (default 17920)
 *   --json              one JSON object per line instead of the table; each carries
 *                       qemu_version, and one `ratio` line per profile and workload gives
 *                       dwcp's total over the best QEMU method whose guest passed, and
 *                       dwcp's total and CPU seconds over dwcp-plaintext's (tls_ratio,
 *                       tls_cpu_ratio), and over the bound (bound_ratio), from the
 *                       medians of the runs
 *
 * `downtime ms` is QEMU's figure (the source's vCPUs stopped until it sent the last byte);
 * `pause ms` is the guest's whole pause, until the destination agent resumed it
 * (result.guestPauseMs: the destination's load, the relays' checks and the server's
 * confirmation included).
 *
 * The agents run the system's qemu-system-x86_64 (QEMU 10 after scripts/ensure.mjs).
 */
import { execFile } from "node:child_process";
import { open, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { parseArgs, promisify } from "node:util";
import { compress } from "zstd-napi";
import type { MigrationProgress, MigrationResult } from "../src/api/types/migrations.js";
import { probeQemu } from "../src/compute/qemu/qemu-version.js";
import { guestImageManifest, LocalCluster, qemuPidsUnder } from "../src/demo/local-cluster.js";
import { isZeroPage, PAGE_SIZE, pageHash } from "../src/dwcp/hde/page.js";
import { waitFor } from "../src/lib/wait.js";
import { ADDR_A, ADDR_B, WanLink } from "../src/testing/wanem/link.js";
import { emulatorUnavailableReason } from "../src/testing/wanem/netns.js";
import { median, printTable } from "./table.js";

const WORKLOADS: Record<string, string> = {
  idle: "",
  web: "nc.dirty_mb=256 nc.dirty_rate_mbps=5 nc.mix=zero:10,text:85,random:5",
  db: "nc.dirty_mb=512 nc.dirty_rate_mbps=20 nc.mix=zero:20,text:50,random:30",
};
const PATTERN = "nc.pattern_seed=5 nc.pattern_mem_mb=16 nc.pattern_disk_mb=16 nc.verify_every=3";
const METHODS = [
  "qemu",
  "qemu-multifd",
  "qemu-multifd-zstd",
  "qemu-postcopy",
  "dwcp",
  "dwcp-again",
  "dwcp-plaintext",
  "auto",
  "bound",
] as const;
/**
 * What runs without --method: every method but post-copy, which is a policy, not a
 * baseline, and auto, which picks one of the others (asked for on `dc`, where it matters).
 */
const DEFAULT_METHODS = METHODS.filter((m) => m !== "qemu-postcopy" && m !== "auto");
/** The methods that use only QEMU's own transport: the baselines DWCP is compared with. */
const QEMU_METHODS: readonly Method[] = ["qemu", "qemu-multifd", "qemu-multifd-zstd"];
type Method = (typeof METHODS)[number];

interface Row {
  qemu_version: string;
  /** Which repetition (0-based; --repeat). */
  run: number;
  profile: string;
  workload: string;
  method: Method;
  total_s: number | null;
  downtime_ms: number | null;
  /** From the source's vCPUs stopping to the destination's resuming them (result.guestPauseMs). */
  guest_pause_ms: number | null;
  bytes_on_wire: number | null;
  ram_bytes: number | null;
  guest_pass: boolean | null;
  cpu_seconds: number | null;
  state: string;
  detail: Record<string, unknown>;
}

interface Migration {
  id: string;
  state: string;
  stateReason: string;
  transport: string;
  result: MigrationResult;
  progress: Record<string, unknown>;
}

const { values } = parseArgs({
  options: {
    profile: { type: "string", multiple: true },
    link: { type: "string", multiple: true },
    workload: { type: "string", multiple: true },
    method: { type: "string", multiple: true },
    memory: { type: "string", default: "1024" },
    timeout: { type: "string", default: "900" },
    port: { type: "string", default: "17920" },
    repeat: { type: "string", default: "1" },
    json: { type: "boolean", default: false },
  },
});
const profiles = [...(values.profile ?? []), ...(values.link ?? [])];
if (profiles.length === 0) profiles.push("dc", "wan", "intercontinental");
const workloads = values.workload ?? Object.keys(WORKLOADS);
const methods = (values.method ?? DEFAULT_METHODS) as Method[];
for (const w of workloads) if (!(w in WORKLOADS)) throw new Error(`Unknown workload ${w}`);
for (const m of methods) if (!METHODS.includes(m)) throw new Error(`Unknown method ${m}`);
const memoryMiB = Number(values.memory);
const timeoutS = Number(values.timeout);
const port = Number(values.port);
const repeat = Number(values.repeat);
if (!Number.isInteger(repeat) || repeat < 1)
  throw new Error(`--repeat must be a positive integer, got ${values.repeat}`);
const log = (msg: string) => process.stderr.write(`${msg}\n`);

/** The version of the QEMU the agents run ("10.0.2"), probed as the agents probe it. */
const QEMU_VERSION = (await probeQemu()).version;

/** CPU seconds (user + system) a process has used, from /proc. */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** The highest zstd level the DWCP encoder uses (internet mode, src/dwcp/mode.ts). */
const BEST_LEVEL = 6;

/** What must cross, measured on the running guest. */
interface MustCross {
  ram: number;
  zero: number;
  /** Memory only, non-zero pages at zstd level 1 (the bound of issues 5-12). */
  memoryOnlyBytes: number;
  /** Memory pages and disk blocks, non-zero, each distinct page once, zstd BEST_LEVEL. */
  bytes: number;
  diskBlocks: number;
  /** Disk blocks that were zero or repeated a page already counted. */
  diskElided: number;
}

/**
 * The guest's RAM, read from its QEMU's address space (the anonymous mapping of exactly
 * the guest's memory size), and its disk's top layer (the qcow2 overlay QEMU runs on: the
 * mirror copies only that, the base image is on both hosts), reduced to what must cross.
 */
async function mustCrossBytes(qemuPid: number): Promise<MustCross> {
  const maps = await readFile(`/proc/${qemuPid}/maps`, "utf8");
  const size = memoryMiB * 1024 * 1024;
  const line = maps
    .split("\n")
    .map((l) => /^([0-9a-f]+)-([0-9a-f]+) rw/.exec(l))
    .find((m) => m && Number.parseInt(m[2]!, 16) - Number.parseInt(m[1]!, 16) === size);
  if (!line) throw new Error(`no ${memoryMiB} MiB mapping in QEMU ${qemuPid}`);
  // Distinct pages (by the encoder's own page hash), compressed in 4 MiB pieces as they
  // come: the encoder compresses batches, not the whole.
  const seen = new Set<string>();
  let piece: Buffer[] = [];
  let bytes = 0;
  const compressPiece = () => {
    if (piece.length) bytes += compress(Buffer.concat(piece), { compressionLevel: BEST_LEVEL }).length;
    piece = [];
  };
  const keep = (page: Buffer): boolean => {
    const h = pageHash(page).toString("base64");
    if (seen.has(h)) return false;
    seen.add(h);
    piece.push(Buffer.from(page));
    if (piece.length === 1024) compressPiece();
    return true;
  };
  const fh = await open(`/proc/${qemuPid}/mem`, "r");
  const start = Number.parseInt(line[1]!, 16);
  const chunk = Buffer.alloc(4 * 1024 * 1024);
  let zero = 0;
  let memoryOnlyBytes = 0;
  try {
    for (let off = 0; off < size; off += chunk.length) {
      await fh.read(chunk, 0, chunk.length, start + off);
      const nonZero: Buffer[] = [];
      for (let p = 0; p < chunk.length; p += PAGE_SIZE) {
        const page = chunk.subarray(p, p + PAGE_SIZE);
        if (isZeroPage(page)) zero++;
        else {
          nonZero.push(page);
          keep(page);
        }
      }
      if (nonZero.length) memoryOnlyBytes += compress(Buffer.concat(nonZero), { compressionLevel: 1 }).length;
    }
  } finally {
    await fh.close();
  }
  // The overlay QEMU runs on, from its command line (file=…,format=qcow2).
  const argv = (await readFile(`/proc/${qemuPid}/cmdline`, "utf8")).split("\0");
  const disk = argv.map((a) => /(?:^|,)file=([^,]+),format=qcow2/.exec(a)?.[1]).find(Boolean);
  if (!disk) throw new Error(`no qcow2 disk on QEMU ${qemuPid}'s command line`);
  // -U: QEMU holds the image's lock; only the layout is read, and the data below as it is now.
  const { stdout } = await promisify(execFile)(
    "qemu-img",
    ["map", "-U", "--output=json", "-f", "qcow2", disk],
    {
      maxBuffer: 64 * 1024 * 1024,
    },
  );
  const extents = JSON.parse(stdout) as {
    depth: number;
    data: boolean;
    zero: boolean;
    length: number;
    offset?: number;
  }[];
  let diskBlocks = 0;
  let diskElided = 0;
  const img = await open(disk, "r");
  try {
    for (const e of extents) {
      if (e.depth !== 0 || !e.data || e.zero || e.offset === undefined) continue;
      for (let off = 0; off < e.length; off += chunk.length) {
        const n = Math.min(chunk.length, e.length - off);
        await img.read(chunk, 0, n, e.offset + off);
        for (let p = 0; p + PAGE_SIZE <= n; p += PAGE_SIZE) {
          const block = chunk.subarray(p, p + PAGE_SIZE);
          diskBlocks++;
          if (isZeroPage(block) || !keep(block)) diskElided++;
        }
      }
    }
  } finally {
    await img.close();
  }
  compressPiece();
  return {
    ram: size,
    zero,
    memoryOnlyBytes,
    bytes,
    diskBlocks,
    diskElided,
  };
}

/** Median of numbers (the mean of the middle two for an even count). */
async function main(): Promise<void> {
  const why = emulatorUnavailableReason();
  if (why) {
    console.log(`bench:migration skipped: ${why}`);
    return;
  }
  const manifest = await guestImageManifest();
  const rows: Row[] = [];
  const medians: Median[] = [];
  const ratios: Ratio[] = [];
  for (const profile of profiles) {
    const link = await WanLink.create({ spec: profile, management: true });
    const net = link.management!;
    const c = await LocalCluster.create(port);
    try {
      await c.startServer([], { listenHost: "0.0.0.0" });
      const serverUrl = `https://${net.host}:${port}`;
      const agentFlags = ["--memory", String(memoryMiB * 3), "--stop-grace", "5"];
      const sites = [
        { name: "site-a", ns: link.nsA, mgmt: net.a, data: ADDR_A, port: port + 1 },
        { name: "site-b", ns: link.nsB, mgmt: net.b, data: ADDR_B, port: port + 2 },
      ];
      const startAgents = async (extra: string[] = []) => {
        for (const s of sites)
          await c.startAgent(s.name, s.port, [...agentFlags, "--data-address", s.data, ...extra], {
            netns: s.ns,
            host: s.mgmt,
            serverUrl,
          });
      };
      /** Restarts both agents (VMs keep running) with their DWCP caches emptied. */
      const restartAgents = async (extra: string[]) => {
        for (const s of sites) {
          await c.stop(s.name);
          await rm(path.join(c.agentDir(s.name), "dwcp"), { recursive: true, force: true });
        }
        await startAgents(extra);
        for (const s of sites) {
          await waitFor(
            async () => {
              const h = (await c.api<{ liveness: string }>("GET", `/v1/hosts/${s.name}`)).body;
              return h.liveness === "alive" || undefined;
            },
            { timeoutMs: 60_000, what: `${s.name} alive again` },
          );
        }
      };
      await startAgents();
      // On both sites: copying the base image to a host that lacks it is part of a VM's
      // first move there, and would land in whichever method happens to run first.
      const imp = await c.cli(["image", "import", "guest", "--manifest", manifest]);
      if (imp.code !== 0) throw new Error(`image import failed: ${imp.stderr}`);
      const agentPids = () =>
        sites.map((s) => c.daemonPid(s.name)).filter((p): p is number => typeof p === "number");

      for (const workload of workloads) {
        let generation = 0;
        let name = "";
        /** A new guest (fresh console), booted, verified once and settled into its workload. */
        const boot = async () => {
          name = `bench-${workload}${generation++ === 0 ? "" : `-${generation}`}`;
          const created = await c.api("POST", "/v1/vms", {
            name,
            image: "guest",
            memoryMiB,
            kernelArgs: `${PATTERN} ${WORKLOADS[workload]}`.trim(),
          });
          if (created.status !== 201) throw new Error(`create failed: ${JSON.stringify(created.body)}`);
          await c.waitVmState(name, "running", 180_000);
          await c.waitConsole(name, /NC-VERIFY PASS seed=5 .*round=1/, 180_000);
          // Let the workload fill its memory and reach its steady dirty rate.
          await new Promise((r) => setTimeout(r, 10_000));
        };
        const remove = async () => {
          // A VM still settling after its migration (or stopping a hung guest) may refuse
          // the delete for a moment: ask again until it is accepted.
          let last = "";
          await waitFor(
            async () => {
              if ((await c.vm(name)) === undefined) return true;
              const res = await c.api("DELETE", `/v1/vms/${name}`);
              if (res.status >= 300 && res.status !== 404) last = JSON.stringify(res.body);
              return undefined;
            },
            { timeoutMs: 180_000, intervalMs: 1000, what: `${name} deleted` },
          ).catch((err: unknown) => {
            throw new Error(`${err instanceof Error ? err.message : String(err)}; last refusal: ${last}`);
          });
        };
        await boot();
        const where = async () => ((await c.vm(name)) as { host: string; id: string }).host;
        const other = (h: string) => (h === "site-a" ? "site-b" : "site-a");

        /** Migrates once; returns the row fields. */
        const migrate = async (options: Record<string, unknown>) => {
          const from = await where();
          const to = other(from);
          const lastRound = Math.max(
            0,
            ...(await c.console(name, 400)).map((l) =>
              Number(/NC-VERIFY PASS .*round=(\d+)/.exec(l)?.[1] ?? 0),
            ),
          );
          const wire0 = await link.siteABytes();
          const cpu0 = (await Promise.all(agentPids().map(cpuSeconds))).reduce((a, b) => a + b, 0);
          const t0 = performance.now();
          const res = await c.api<Migration>("POST", `/v1/vms/${name}/migrations`, {
            targetHost: to,
            options: { timeoutSeconds: timeoutS, ...options },
          });
          if (res.status !== 202) throw new Error(`migrate failed: ${JSON.stringify(res.body)}`);
          // When each phase began (state and reason as the server records them), seconds
          // after the API call: where the wall-clock time goes besides QEMU's own transfer.
          const phases: Record<string, number> = {};
          // Every half second: seconds, disk mirrored, memory sent by QEMU, and over DWCP
          // the memory and disk bytes on the wire and the stream count (MiB, 0.1 MiB steps):
          // where the overlap of disk and memory shows.
          const timeline: (number | string)[][] = [];
          let nextSample = 0;
          const mib = (b: unknown) => (typeof b === "number" ? Number((b / 2 ** 20).toFixed(1)) : "-");
          const m = await waitFor(
            async () => {
              const x = (await c.api<Migration>("GET", `/v1/migrations/${res.body.id}`)).body;
              const now = (performance.now() - t0) / 1000;
              const phase = `${x.state}: ${x.stateReason}`;
              phases[phase] ??= Number(now.toFixed(2));
              const p = x.progress as Partial<MigrationProgress>;
              if (now >= nextSample && p.phase) {
                nextSample = now + 0.5;
                timeline.push([
                  Number(now.toFixed(1)),
                  p.phase,
                  mib(p.diskBytesDone),
                  mib(p.memoryBytesSent),
                  mib(p.transport?.wireBytes),
                  mib(p.transport?.diskWireBytes),
                  p.transport?.streams ?? "-",
                ]);
              }
              return ["completed", "failed", "cancelled"].includes(x.state) ? x : undefined;
            },
            // A coarse poll would add up to its interval to every method's time.
            { timeoutMs: (timeoutS + 120) * 1000, intervalMs: 100, what: `migration of ${name}` },
          );
          const wall = (performance.now() - t0) / 1000;
          const wire = (await link.siteABytes()) - wire0;
          const cpu = (await Promise.all(agentPids().map(cpuSeconds))).reduce((a, b) => a + b, 0) - cpu0;
          let pass: boolean | null = null;
          let verdict: string[] = [];
          if (m.state === "completed") {
            const seen = await c
              .waitConsole(name, /NC-VERIFY (PASS|FAIL) .*round=(\d+)/, 60_000)
              .catch(() => null);
            const lines = await c.console(name, 400);
            verdict = lines.filter((l) => /NC-VERIFY|NC-READY|NC-ERROR/.test(l)).slice(-3);
            pass =
              !lines.some((l) => l.includes("NC-VERIFY FAIL") || l.startsWith("NC-READY")) &&
              lines.some((l) => Number(/NC-VERIFY PASS .*round=(\d+)/.exec(l)?.[1] ?? 0) > lastRound) &&
              seen !== null;
          }
          return { m, wall, wire, cpu, pass, from, to, verdict, lastRound, phases, timeline };
        };

        const ram = await mustCrossBytes(
          (await qemuPidsUnder(`${c.agentDir(await where())}/vms/`)).at(0) ?? Number.NaN,
        ).catch((err) => {
          log(`bound: ${err instanceof Error ? err.message : String(err)}`);
          return null;
        });
        const rateBps = link.spec.kind === "emulated" ? link.spec.ab.rateBps : null;
        const rttS = link.spec.kind === "emulated" ? (link.spec.ab.delayMs + link.spec.ba.delayMs) / 1000 : 0;
        let run = 0;
        /** Whether a DWCP migration warmed the agents' caches since they were last emptied. */
        let warm = false;

        const measured = async (method: Method, options: Record<string, unknown>) => {
          log(
            `${profile} ${workload} ${method}${repeat > 1 ? ` (run ${run + 1} of ${repeat})` : ""}: migrating...`,
          );
          const r = await migrate(options);
          if (r.m.transport === "dwcp") warm = true;
          const row: Row = {
            qemu_version: QEMU_VERSION,
            run,
            profile: link.spec.name,
            workload,
            method,
            total_s: r.m.state === "completed" ? Number(r.wall.toFixed(2)) : null,
            downtime_ms: r.m.result.downtimeMs ?? null,
            guest_pause_ms: r.m.result.guestPauseMs ?? null,
            bytes_on_wire: r.wire,
            ram_bytes: memoryMiB * 1024 * 1024,
            guest_pass: r.pass,
            cpu_seconds: Number(r.cpu.toFixed(2)),
            state: r.m.state === "completed" ? "completed" : `${r.m.state}: ${r.m.stateReason}`,
            detail: {
              from: r.from,
              to: r.to,
              transport: r.m.transport,
              qemu_total_ms: r.m.result.totalTimeMs,
              ...(r.m.result.downtimeBreakdown ? { downtime_breakdown: r.m.result.downtimeBreakdown } : {}),
              memory_bytes: r.m.result.memoryBytes,
              disk_bytes: r.m.result.diskBytes,
              guest_lines: r.verdict,
              phases: r.phases,
              timeline: {
                columns: [
                  "s",
                  "phase",
                  "disk MiB",
                  "memory MiB",
                  "memory wire MiB",
                  "disk wire MiB",
                  "streams",
                ],
                rows: r.timeline,
              },
              rounds_before: r.lastRound,
            },
          };
          rows.push(row);
          if (values.json) console.log(JSON.stringify(row));
          else log(`  -> ${row.state}, ${row.total_s ?? "-"} s, downtime ${row.downtime_ms ?? "-"} ms`);
          if (r.m.state !== "completed") {
            // What the agents said about it (warnings and errors), for whoever reads the run.
            for (const s of sites)
              for (const l of c
                .daemonLog(s.name)
                .filter((l) => /"level":(40|50|60)/.test(l) && !l.includes("data dir was readable"))
                .slice(-8))
                log(`  ${s.name}: ${l}`);
          }
          if (r.pass === false) {
            // A guest that arrived corrupted (the TCG defect, docs/migration.md) would make
            // every later method move a hung or rebooting guest: the next one gets a new guest.
            log(`${profile} ${workload}: the guest failed its check after ${method}; booting a new one`);
            await remove();
            await boot();
          }
        };
        const unmeasured = async (options: Record<string, unknown>) => {
          log(`${profile} ${workload}: return trip`);
          const r = await migrate(options);
          if (r.m.transport === "dwcp") warm = true;
        };

        for (run = 0; run < repeat; run++) {
          // Every other run in reverse, so that no method always runs right after the same one.
          const order = run % 2 === 0 ? methods : [...methods].reverse();
          for (const method of order) await runMethod(method);
        }
        async function runMethod(method: Method): Promise<void> {
          if (method === "qemu") await measured(method, { transport: "qemu" });
          else if (method === "qemu-multifd")
            await measured(method, { transport: "qemu", multifdChannels: 4 });
          else if (method === "qemu-postcopy") await measured(method, { transport: "qemu", postcopy: true });
          else if (method === "auto") await measured(method, { transport: "auto" });
          else if (method === "qemu-multifd-zstd")
            await measured(method, { transport: "qemu", multifdChannels: 4, multifdCompression: "zstd" });
          else if (method === "dwcp") {
            // The first DWCP migration between the hosts: the destination's cache is cold.
            if (warm) {
              log(`${profile} ${workload}: restarting the agents with their DWCP caches emptied`);
              await restartAgents([]);
              warm = false;
            }
            await measured(method, { transport: "dwcp" });
          } else if (method === "dwcp-again") {
            await unmeasured({ transport: "dwcp" });
            await measured(method, { transport: "dwcp" });
          } else if (method === "dwcp-plaintext") {
            log(`${profile} ${workload}: restarting the agents with --dwcp-plaintext, caches emptied`);
            await restartAgents(["--dwcp-plaintext"]);
            try {
              await measured(method, { transport: "dwcp" });
            } finally {
              await restartAgents([]);
              warm = false;
            }
          } else if (method === "bound") {
            const row: Row = {
              qemu_version: QEMU_VERSION,
              run,
              profile: link.spec.name,
              workload,
              method,
              total_s: ram && rateBps ? Number(((ram.bytes * 8) / rateBps + rttS).toFixed(2)) : null,
              downtime_ms: null,
              guest_pause_ms: null,
              bytes_on_wire: ram?.bytes ?? null,
              ram_bytes: ram?.ram ?? null,
              guest_pass: null,
              cpu_seconds: null,
              state: ram ? (rateBps ? "computed" : "no link rate (unemulated)") : "memory not readable",
              detail: {
                zero_pages: ram?.zero,
                disk_blocks: ram?.diskBlocks,
                disk_blocks_elided: ram?.diskElided,
                rtt_s: rttS,
                zstd_level: BEST_LEVEL,
                memory_only_bytes: ram?.memoryOnlyBytes,
                memory_only_s:
                  ram && rateBps ? Number(((ram.memoryOnlyBytes * 8) / rateBps).toFixed(2)) : null,
              },
            };
            rows.push(row);
            if (values.json) console.log(JSON.stringify(row));
          }
        }
        for (const m of methods) {
          const summary = medianRow(rows, link.spec.name, workload, m);
          medians.push(summary);
          if (values.json) console.log(JSON.stringify(summary));
        }
        const ratio = ratioRow(medians, link.spec.name, workload);
        if (values.json) console.log(JSON.stringify(ratio));
        else ratios.push(ratio);
        await remove();
      }
    } finally {
      await c.destroy();
      await link.close();
    }
  }
  if (!values.json) {
    printRows(rows);
    if (repeat > 1) printMedians(medians);
    printTable(
      [
        "profile",
        "workload",
        "dwcp s",
        "best QEMU method",
        "its s",
        "dwcp / best QEMU",
        "bound s",
        "dwcp / bound",
        "TLS / plaintext",
        "TLS / plaintext CPU",
        "auto / fastest",
      ],
      ratios.map((r) => [
        r.profile,
        r.workload,
        r.dwcp_s?.toFixed(2) ?? "-",
        r.best_qemu_method ?? "-",
        r.best_qemu_s?.toFixed(2) ?? "-",
        r.ratio?.toFixed(2) ?? "-",
        r.bound_s?.toFixed(2) ?? "-",
        r.bound_ratio?.toFixed(2) ?? "-",
        r.tls_ratio?.toFixed(2) ?? "-",
        r.tls_cpu_ratio?.toFixed(2) ?? "-",
        r.auto_ratio?.toFixed(2) ?? "-",
      ]),
    );
  }
}

/** The median and spread of one method's runs (each figure over the runs that have it). */
interface Median {
  kind: "median";
  qemu_version: string;
  profile: string;
  workload: string;
  method: Method;
  runs: number;
  /** Runs that completed (for `bound`: that were computed). */
  completed: number;
  /** Completed runs whose guest passed its check. */
  guest_pass: number;
  total_s: number | null;
  total_s_min: number | null;
  total_s_max: number | null;
  downtime_ms: number | null;
  downtime_ms_min: number | null;
  downtime_ms_max: number | null;
  guest_pause_ms: number | null;
  guest_pause_ms_min: number | null;
  guest_pause_ms_max: number | null;
  bytes_on_wire: number | null;
  cpu_seconds: number | null;
}

function medianRow(rows: Row[], profile: string, workload: string, method: Method): Median {
  const mine = rows.filter((r) => r.profile === profile && r.workload === workload && r.method === method);
  // A run counts when it completed and its guest passed (bound rows have no guest).
  const ok = mine.filter((r) => r.total_s !== null && r.guest_pass !== false);
  const nums = (f: (r: Row) => number | null) => ok.map(f).filter((x): x is number => typeof x === "number");
  const round = (x: number | null, d: number) => (x === null ? null : Number(x.toFixed(d)));
  const stat = (f: (r: Row) => number | null, d: number) => {
    const xs = nums(f);
    return {
      median: round(median(xs), d),
      min: xs.length ? round(Math.min(...xs), d) : null,
      max: xs.length ? round(Math.max(...xs), d) : null,
    };
  };
  const total = stat((r) => r.total_s, 2);
  const down = stat((r) => r.downtime_ms, 0);
  const pause = stat((r) => r.guest_pause_ms, 0);
  return {
    kind: "median",
    qemu_version: QEMU_VERSION,
    profile,
    workload,
    method,
    runs: mine.length,
    completed: mine.filter((r) => r.total_s !== null).length,
    guest_pass: mine.filter((r) => r.guest_pass === true).length,
    total_s: total.median,
    total_s_min: total.min,
    total_s_max: total.max,
    downtime_ms: down.median,
    downtime_ms_min: down.min,
    downtime_ms_max: down.max,
    guest_pause_ms: pause.median,
    guest_pause_ms_min: pause.min,
    guest_pause_ms_max: pause.max,
    bytes_on_wire: round(median(nums((r) => r.bytes_on_wire)), 0),
    cpu_seconds: round(median(nums((r) => r.cpu_seconds)), 2),
  };
}

/** dwcp's median total over the fastest QEMU-only method's median, over dwcp-plaintext's and over the bound. */
interface Ratio {
  kind: "ratio";
  qemu_version: string;
  profile: string;
  workload: string;
  dwcp_s: number | null;
  best_qemu_method: string | null;
  best_qemu_s: number | null;
  ratio: number | null;
  /** The full bound (memory and disk, one round trip). */
  bound_s: number | null;
  /** dwcp over the full bound. */
  bound_ratio: number | null;
  /** dwcp-again's bytes on the wire over dwcp's. */
  again_bytes_ratio: number | null;
  /** auto's total over the fastest method measured (QEMU's or DWCP, cold). */
  auto_ratio: number | null;
  /** dwcp (TLS) total over dwcp-plaintext total, both cold. */
  tls_ratio: number | null;
  /** dwcp (TLS) agents' CPU seconds over dwcp-plaintext's. */
  tls_cpu_ratio: number | null;
}

/**
 * From the medians of completed runs whose guest passed: a faster migration that delivers
 * a broken guest is no baseline. A method none of whose runs passed has no median.
 */
function ratioRow(medians: Median[], profile: string, workload: string): Ratio {
  const mine = medians.filter((r) => r.profile === profile && r.workload === workload);
  const of = (m: Method) => mine.find((r) => r.method === m && r.total_s !== null);
  const dwcp = of("dwcp");
  const plain = of("dwcp-plaintext");
  const again = of("dwcp-again");
  const bound = of("bound");
  const best = mine
    .filter((r) => QEMU_METHODS.includes(r.method) && r.total_s !== null)
    .sort((a, b) => a.total_s! - b.total_s!)[0];
  const div = (a: number | null | undefined, b: number | null | undefined) =>
    a !== null && a !== undefined && b ? Number((a / b).toFixed(3)) : null;
  return {
    kind: "ratio",
    qemu_version: QEMU_VERSION,
    profile,
    workload,
    dwcp_s: dwcp?.total_s ?? null,
    best_qemu_method: best?.method ?? null,
    best_qemu_s: best?.total_s ?? null,
    ratio: div(dwcp?.total_s, best?.total_s),
    bound_s: bound?.total_s ?? null,
    bound_ratio: div(dwcp?.total_s, bound?.total_s),
    again_bytes_ratio: div(again?.bytes_on_wire, dwcp?.bytes_on_wire),
    auto_ratio: div(of("auto")?.total_s, fastest([best?.total_s, dwcp?.total_s])),
    tls_ratio: div(dwcp?.total_s, plain?.total_s),
    tls_cpu_ratio: div(dwcp?.cpu_seconds, plain?.cpu_seconds),
  };
}

/** The smallest of the figures that exist, or null. */
function fastest(xs: (number | null | undefined)[]): number | null {
  const ok = xs.filter((x): x is number => typeof x === "number");
  return ok.length ? Math.min(...ok) : null;
}

function printRows(rows: Row[]): void {
  const head = [
    "profile",
    "workload",
    "method",
    "run",
    "total s",
    "downtime ms",
    "pause ms",
    "MiB wire",
    "CPU s",
    "guest",
    "state",
  ];
  const body = rows.map((r) => [
    r.profile,
    r.workload,
    r.method,
    String(r.run + 1),
    r.total_s?.toFixed(2) ?? "-",
    r.downtime_ms?.toString() ?? "-",
    r.guest_pause_ms?.toString() ?? "-",
    r.bytes_on_wire === null ? "-" : (r.bytes_on_wire / 2 ** 20).toFixed(1),
    r.cpu_seconds?.toFixed(1) ?? "-",
    r.guest_pass === null ? "-" : r.guest_pass ? "PASS" : "FAIL",
    r.state,
  ]);
  printTable(head, body);
}

function printMedians(medians: Median[]): void {
  const spread = (m: number | null, lo: number | null, hi: number | null, d: number) =>
    m === null ? "-" : `${m.toFixed(d)} (${lo!.toFixed(d)}–${hi!.toFixed(d)})`;
  printTable(
    [
      "profile",
      "workload",
      "method",
      "runs ok / all",
      "guest PASS",
      "total s (min–max)",
      "downtime ms (min–max)",
      "pause ms (min–max)",
      "MiB wire",
      "CPU s",
    ],
    medians.map((m) => [
      m.profile,
      m.workload,
      m.method,
      `${m.completed} / ${m.runs}`,
      m.method === "bound" ? "-" : String(m.guest_pass),
      spread(m.total_s, m.total_s_min, m.total_s_max, 2),
      spread(m.downtime_ms, m.downtime_ms_min, m.downtime_ms_max, 0),
      spread(m.guest_pause_ms, m.guest_pause_ms_min, m.guest_pause_ms_max, 0),
      m.bytes_on_wire === null ? "-" : (m.bytes_on_wire / 2 ** 20).toFixed(1),
      m.cpu_seconds?.toFixed(1) ?? "-",
    ]),
  );
}

main().catch((err) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.exit(1);
});
