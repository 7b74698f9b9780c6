/**
 * `npm run bench:dwcp`: DWCP against plain TCP and TCP + streaming zstd over emulated WAN
 * links (issue 4). DWCP runs mutual TLS 1.3 (`dwcp`, certificates from a throwaway test
 * CA) and, in the same run, without TLS (`dwcp-plaintext`), each with its own receiver
 * cache and sender history (issue 12). Per profile: pass 1 sends a synthetic memory image (~30 % zero, 40 %
 * text-like, 30 % random pages), pass 2 the same image with 10 % of its pages changed.
 * Each measurement runs its receiver and its sender in two child processes (bench/dwcp-run.ts),
 * as on two hosts: CPU seconds are their sum, max RSS the larger of the two.
 *
 *   --profile NAME     dc | metro | wan | intercontinental (repeatable; default all)
 *   --link SPEC        ad-hoc link, e.g. rate=20mbit,rtt=250ms,loss=1%
 *   --cc NAME[,NAME]   congestion control per namespace (default cubic)
 *   --size SIZE        image size, e.g. 1GiB (default), 256MiB
 *   --methods LIST     subset of tcp,tcp-zstd,dwcp,dwcp-plaintext
 *   --max-seconds N    cap per measurement; a capped run reports complete=false (default 150)
 *   --repeat N         run each measurement N times and report the median-goodput run (default 1);
 *                      each repeat of pass 1 starts with an empty cache
 *   --json             one JSON object per line instead of the table
 *
 * CPU seconds are reported per end (cpu_seconds_sender / cpu_seconds_receiver, process.cpuUsage
 * of each child) and summed (cpu_seconds).
 */
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { PAGE_SIZE } from "../src/dwcp/hde/page.js";
import { makeTlsCluster } from "../src/testing/tls-fixtures.js";
import { WanLink } from "../src/testing/wanem/link.js";
import { emulatorUnavailableReason } from "../src/testing/wanem/netns.js";
import type { EndResult, RunResult, RunSpec } from "./dwcp-run.js";

interface Row extends RunResult {
  profile: string;
  cc: string;
  method: string;
  pass: number;
  runs: number;
  goodput_mbps_runs: number[];
}

function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(KiB|MiB|GiB)?$/i.exec(s);
  if (!m) throw new Error(`Bad size ${s}`);
  const mult = { kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3 }[(m[2] ?? "MiB").toLowerCase() as "mib"];
  return Math.round(Number(m[1]) * mult);
}

function parseArgs(argv: string[]) {
  const out = {
    profiles: [] as string[],
    ccs: ["cubic"],
    size: 1024 ** 3,
    methods: ["tcp", "tcp-zstd", "dwcp", "dwcp-plaintext"],
    maxSeconds: 150,
    repeat: 1,
    json: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = (): string => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${a} needs a value`);
      return x;
    };
    if (a === "--profile") out.profiles.push(v());
    else if (a === "--link") out.profiles.push(v());
    else if (a === "--cc") out.ccs = v().split(",");
    else if (a === "--size") out.size = parseSize(v());
    else if (a === "--methods") out.methods = v().split(",");
    else if (a === "--max-seconds") out.maxSeconds = Number(v());
    else if (a === "--repeat") out.repeat = Math.max(1, Number(v()));
    else if (a === "--json") out.json = true;
    else throw new Error(`Unknown option ${a}`);
  }
  if (out.profiles.length === 0) out.profiles = ["dc", "metro", "wan", "intercontinental"];
  return out;
}

/** Starts one end; resolves `ready` when a receiver listens and `result` with its EndResult. */
function startEnd(spec: RunSpec): { ready: Promise<void>; result: Promise<EndResult> } {
  const script = fileURLToPath(new URL("./dwcp-run.js", import.meta.url));
  // NC_DWCP_BENCH_NODE_ARGS passes flags to the measuring children, e.g. "--cpu-prof".
  const extra = (process.env.NC_DWCP_BENCH_NODE_ARGS ?? "").split(" ").filter(Boolean);
  const child = spawn(process.execPath, [...extra, script, JSON.stringify(spec)], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  let markReady: () => void = () => {};
  const ready = new Promise<void>((resolve) => {
    markReady = resolve;
  });
  child.stdout.on("data", (d: Buffer) => {
    out += d.toString();
    if (out.includes('{"ready":true}')) markReady();
  });
  const result = new Promise<EndResult>((resolve, reject) => {
    child.on("exit", (code) => {
      const line = out.trim().split("\n").at(-1) ?? "";
      if (code === 0 && line.startsWith("{") && !line.includes('"ready"'))
        resolve(JSON.parse(line) as EndResult);
      else reject(new Error(`${spec.method} pass ${spec.pass} ${spec.role} failed (exit ${code})`));
    });
  });
  // A receiver that dies before listening must not leave the caller waiting on `ready`.
  result.catch(() => markReady());
  return { ready, result };
}

/** Runs a receiver and then a sender in two processes and merges what they measured. */
async function runPair(spec: Omit<RunSpec, "role">): Promise<RunResult> {
  const receiver = startEnd({ ...spec, role: "receive" });
  await receiver.ready;
  const sender = startEnd({ ...spec, role: "send" });
  const [tx, rx] = await Promise.all([sender.result, receiver.result]);
  return {
    bytes_in: tx.bytes,
    bytes_on_wire: tx.wire ?? rx.wire ?? 0,
    seconds: tx.seconds,
    goodput_mbps: Number(((tx.bytes * 8) / tx.seconds / 1e6).toFixed(2)),
    cpu_seconds: Number((tx.cpu_seconds + rx.cpu_seconds).toFixed(2)),
    max_rss_mb: Math.max(tx.max_rss_mb, rx.max_rss_mb),
    verified: rx.bytes === tx.bytes && rx.check === tx.check,
    complete: tx.complete,
    detail: {
      ...rx.detail,
      ...tx.detail,
      cpu_seconds_sender: tx.cpu_seconds,
      cpu_seconds_receiver: rx.cpu_seconds,
      rss_mb_sender: tx.max_rss_mb,
      rss_mb_receiver: rx.max_rss_mb,
    },
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0
    ? Number.NaN
    : s.length % 2
      ? s[s.length >> 1]!
      : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

function printTable(rows: Row[]): void {
  const head = [
    "profile",
    "cc",
    "method",
    "pass",
    "MiB in",
    "MiB wire",
    "seconds",
    "goodput Mbit/s",
    "cpu s tx+rx",
    "rss MiB",
    "ok",
    "note",
  ];
  const body = rows.map((r) => [
    r.profile,
    r.cc,
    r.method,
    String(r.pass),
    (r.bytes_in / 2 ** 20).toFixed(0),
    (r.bytes_on_wire / 2 ** 20).toFixed(1),
    r.seconds.toFixed(1),
    r.goodput_mbps.toFixed(1),
    `${Number(r.detail.cpu_seconds_sender ?? 0).toFixed(1)}+${Number(r.detail.cpu_seconds_receiver ?? 0).toFixed(1)}`,
    String(r.max_rss_mb),
    r.verified ? "yes" : "NO",
    [
      r.complete ? "" : "capped",
      r.detail.mode ? `${r.detail.mode} n=${r.detail.streams} zstd=${r.detail.level}` : "",
    ]
      .filter(Boolean)
      .join(" "),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ");
  console.log(line(head));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const b of body) console.log(line(b));
}

function summarize(rows: Row[]): string[] {
  const out: string[] = [];
  const groups = new Map<string, Row[]>();
  for (const r of rows)
    groups.set(`${r.profile}|${r.cc}`, [...(groups.get(`${r.profile}|${r.cc}`) ?? []), r]);
  for (const [key, rs] of groups) {
    const g = (m: string, p: number): number | undefined =>
      rs.find((r) => r.method === m && r.pass === p)?.goodput_mbps;
    const w = (m: string, p: number): number | undefined =>
      rs.find((r) => r.method === m && r.pass === p)?.bytes_on_wire;
    const parts: string[] = [];
    for (const p of [1, 2]) {
      const d = g("dwcp", p);
      const t = g("tcp", p);
      const z = g("tcp-zstd", p);
      if (d !== undefined && t) parts.push(`pass ${p}: dwcp/tcp ${(d / t).toFixed(2)}x`);
      if (d !== undefined && z) parts.push(`dwcp/tcp-zstd ${(d / z).toFixed(2)}x`);
    }
    const c = (m: string, p: number): number | undefined =>
      rs.find((r) => r.method === m && r.pass === p)?.cpu_seconds;
    for (const p of [1, 2]) {
      const d = g("dwcp", p);
      const pl = g("dwcp-plaintext", p);
      const cd = c("dwcp", p);
      const cp = c("dwcp-plaintext", p);
      if (d !== undefined && pl)
        parts.push(`pass ${p}: TLS/plaintext goodput ${(d / pl).toFixed(2)}x, cpu ${cd}s vs ${cp}s`);
    }
    const w1 = w("dwcp", 1);
    const w2 = w("dwcp", 2);
    if (w1 && w2 !== undefined) parts.push(`pass2/pass1 wire ${((100 * w2) / w1).toFixed(1)}%`);
    const rss = rs.filter((r) => r.method.startsWith("dwcp")).map((r) => r.max_rss_mb);
    if (rss.length) parts.push(`dwcp max RSS ${Math.max(...rss)} MiB`);
    out.push(`${key.replace("|", " ")}: ${parts.join(", ")}`);
  }
  return out;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const why = emulatorUnavailableReason();
  if (why) {
    console.log(`bench:dwcp skipped: ${why}`);
    return;
  }
  const pages = Math.floor(args.size / PAGE_SIZE);
  const rows: Row[] = [];
  const pki = makeTlsCluster(["receiver.bench", "sender.bench"]);
  const tls = {
    ca: pki.ca,
    receiver: pki.leaves["receiver.bench"]!,
    sender: pki.leaves["sender.bench"]!,
  };
  let port = 47100;
  let link: WanLink | null = null;
  let stateDir: string | null = null;
  const cleanup = async (): Promise<void> => {
    await link?.close();
    link = null;
    if (stateDir) rmSync(stateDir, { recursive: true, force: true });
    stateDir = null;
  };
  for (const sig of ["SIGINT", "SIGTERM"] as const)
    process.once(sig, () => void cleanup().then(() => process.exit(130)));
  try {
    for (const cc of args.ccs) {
      for (const profile of args.profiles) {
        link = await WanLink.create({ spec: profile, cc });
        stateDir = mkdtempSync("/tmp/nc-dwcp-bench-");
        for (const pass of [1, 2] as const) {
          for (const method of args.methods as RunSpec["method"][]) {
            const runs: RunResult[] = [];
            for (let k = 0; k < args.repeat; k++) {
              // Repeat k of pass 1 starts cold in its own dir; repeat k of pass 2 finds only
              // what repeat k of pass 1 left (a repeat must not warm the next one).
              const methodDir = join(stateDir, method, `run${k}`);
              mkdirSync(methodDir, { recursive: true });
              const spec: Omit<RunSpec, "role"> = {
                method,
                pass,
                pages,
                nsA: link.nsA,
                nsB: link.nsB,
                port: port++,
                // Each DWCP variant keeps its own cache and history: pass 1 of the second
                // must not find the first one's pages.
                stateDir: methodDir,
                maxSeconds: args.maxSeconds,
                tls,
              };
              if (port > 48900) port = 47100;
              runs.push(await runPair(spec));
            }
            // Report the run with the median goodput, and every run's goodput beside it.
            const goodputs = runs.map((r) => r.goodput_mbps);
            const mid = median(goodputs);
            const r = runs.reduce((best, x) =>
              Math.abs(x.goodput_mbps - mid) < Math.abs(best.goodput_mbps - mid) ? x : best,
            );
            const row: Row = {
              profile: link.spec.name,
              cc: link.cc,
              method,
              pass,
              ...r,
              runs: runs.length,
              goodput_mbps_runs: goodputs,
            };
            rows.push(row);
            if (args.json) console.log(JSON.stringify(row));
            else
              console.error(
                `  ${row.profile} ${row.cc} ${method} pass ${pass}: ${row.goodput_mbps} Mbit/s${row.complete ? "" : " (capped)"}`,
              );
          }
        }
        await cleanup();
      }
    }
  } finally {
    await cleanup();
  }
  if (!args.json) {
    printTable(rows);
    console.log("");
    for (const s of summarize(rows)) console.log(s);
  }
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(1);
});
