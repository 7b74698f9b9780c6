/**
 * `npm run bench:relay`: where the DWCP migration relay spends its CPU. Records a real
 * QEMU 7.2 outgoing migration stream of the bench guest (1 GiB, the `idle` workload of
 * bench:migration, TCG) once, then relays it inside this process over a loopback DWCP
 * session, both ends here, so the CPU counted is the relay's whole cost per stream:
 *
 *   tcp         baseline: a plain Node TCP proxy, the bytes moved and nothing else
 *   dwcp        HDE (zero elision, dedup, deltas, zstd), both page caches cold
 *   dwcp-again  the same stream once more: both caches warm
 *
 * Prints wall time, CPU seconds (user + system of this process), logical and wire bytes
 * and MiB relayed per CPU-second, and with `--profile` the functions taking the most CPU
 * in the `dwcp` run (V8's sampling profiler). The host is noisy: `--runs` repeats each
 * method and the table shows medians.
 *
 *   --stream FILE   relay this recorded stream instead of recording one
 *   --level N       zstd level of page batches (default 3, the internet mode's cap)
 *   --runs N        repetitions per method (default 3)
 *   --profile       print the top CPU consumers of the first dwcp run
 *   --profile-out F with --profile: also write that run's V8 profile to F (.cpuprofile)
 *   --json          one JSON object per line: method, run, logical_bytes, wire_bytes,
 *                   wall_s, cpu_s, mib_per_cpu_s (and profile rows with --profile)
 */
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { type MachineConfig, vmRunPaths } from "../src/compute/qemu/machine.js";
import { QemuProcess } from "../src/compute/qemu/process.js";
import { createOverlay } from "../src/compute/qemu/qemu-img.js";
import { guestImageManifest, ROOT } from "../src/demo/local-cluster.js";
import { dialSession } from "../src/dwcp/amst/dial.js";
import { DwcpListener } from "../src/dwcp/amst/listen.js";
import { PageHistory } from "../src/dwcp/hde/history.js";
import { PageCache } from "../src/dwcp/hde/page-cache.js";
import { waitFor } from "../src/lib/wait.js";
import { ChannelRouter } from "../src/migration/dwcp/channel-router.js";
import { MigrationRelaySource } from "../src/migration/dwcp/relay-source.js";
import { MigrationRelayTarget } from "../src/migration/dwcp/relay-target.js";
import { connectLocal, type LocalEndpoint, listenLocal } from "../src/migration/dwcp/socket-io.js";
import { dwcpTestTls } from "../src/testing/tls-fixtures.js";

const { values } = parseArgs({
  options: {
    stream: { type: "string" },
    level: { type: "string", default: "3" },
    runs: { type: "string", default: "3" },
    profile: { type: "boolean", default: false },
    "profile-out": { type: "string" },
    json: { type: "boolean", default: false },
  },
});
const level = Number(values.level);
const runs = Number(values.runs);
if (!Number.isInteger(level) || level < 0 || level > 19) throw new Error("--level must be 0-19");
if (!Number.isInteger(runs) || runs < 1) throw new Error("--runs must be a positive integer");
const log = (msg: string) => process.stderr.write(`${msg}\n`);
const MiB = 1024 * 1024;

interface Row {
  method: "tcp" | "dwcp" | "dwcp-again";
  run: number;
  logical_bytes: number;
  wire_bytes: number;
  wall_s: number;
  cpu_s: number;
  mib_per_cpu_s: number;
}

/** Boots the bench guest under TCG as an agent would and records its outgoing migration stream. */
async function recordStream(file: string): Promise<void> {
  const manifestPath = await guestImageManifest();
  const dir = path.dirname(manifestPath);
  const m = JSON.parse(readFileSync(manifestPath, "utf8")) as {
    kernel: string;
    initrd: string;
    disk: string;
    cmdline: string;
  };
  const work = mkdtempSync(path.join(tmpdir(), "nc-bench-relay-"));
  const diskPath = path.join(work, "disk.qcow2");
  await createOverlay(path.join(dir, m.disk), "qcow2", diskPath);
  const cfg: MachineConfig = {
    vmId: randomUUID(),
    name: "bench-relay",
    vcpus: 2,
    memoryMiB: 1024,
    accel: "tcg",
    diskPath,
    kernelPath: path.join(dir, m.kernel),
    initrdPath: path.join(dir, m.initrd),
    // The guest of bench:migration's `idle` workload: 16 MiB of memory and disk pattern.
    kernelCmdline: `${m.cmdline} nc.pattern_seed=5 nc.pattern_mem_mb=16 nc.pattern_disk_mb=16 nc.verify_every=3`,
    runDir: path.join(work, "run"),
  };
  log("recording a migration stream: booting the guest (TCG)...");
  const proc = await QemuProcess.launch(cfg);
  try {
    const serial = vmRunPaths(cfg.runDir).serialLog;
    await waitFor(
      () => (existsSync(serial) && readFileSync(serial, "utf8").includes("NC-VERIFY PASS")) || undefined,
      { timeoutMs: 180_000, intervalMs: 500, what: "the guest to verify its pattern" },
    );
    await proc.qmp.execute("migrate", { uri: `exec:cat > ${file}.part` });
    await waitFor(
      async () => {
        const r = (await proc.qmp.execute("query-migrate")) as { status?: string };
        if (r.status === "failed") throw new Error("recording the migration stream failed");
        return r.status === "completed" || undefined;
      },
      { timeoutMs: 300_000, intervalMs: 200, what: "the stream recording" },
    );
    renameSync(`${file}.part`, file);
  } finally {
    await proc.kill();
    rmSync(work, { recursive: true, force: true });
  }
}

/** Writes `data` into a local socket the way QEMU's migration does: 64 KiB at a time. */
async function writeStream(endpoint: LocalEndpoint, data: Buffer): Promise<void> {
  const s = await connectLocal(endpoint);
  for (let off = 0; off < data.length; off += 65_536) {
    if (!s.write(data.subarray(off, off + 65_536))) await new Promise((r) => s.once("drain", r));
  }
  await new Promise<void>((resolve) => s.end(resolve));
}

/** A stand-in for the destination QEMU: counts what it is sent. */
async function sink(): Promise<{ endpoint: LocalEndpoint; received: Promise<number> }> {
  let done!: (n: number) => void;
  const received = new Promise<number>((r) => {
    done = r;
  });
  const { server, endpoint } = await listenLocal({ port: 0 }, (s) => {
    let n = 0;
    s.on("data", (d: Buffer) => {
      n += d.length;
    });
    s.on("end", () => {
      done(n);
      s.end();
      server.close();
    });
  });
  return { endpoint, received };
}

async function measure<T>(fn: () => Promise<T>): Promise<{ wall: number; cpu: number; value: T }> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const value = await fn();
  const c = process.cpuUsage(c0);
  return { wall: (performance.now() - t0) / 1000, cpu: (c.user + c.system) / 1e6, value };
}

async function tcpRun(data: Buffer): Promise<{ wire: number }> {
  const out = await sink();
  const proxy = net.createServer((s) => {
    const up = net.connect(out.endpoint as net.NetConnectOpts);
    s.pipe(up);
    up.pipe(s);
  });
  await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
  const port = (proxy.address() as net.AddressInfo).port;
  await writeStream({ port }, data);
  const n = await out.received;
  proxy.close();
  if (n !== data.length) throw new Error(`tcp baseline delivered ${n} of ${data.length} bytes`);
  return { wire: n };
}

async function main(): Promise<void> {
  const dataDir = path.join(ROOT, ".cache", "bench-data");
  mkdirSync(dataDir, { recursive: true });
  const file = values.stream ?? path.join(dataDir, "relay-idle-1g.stream");
  if (!existsSync(file)) await recordStream(file);
  const data = readFileSync(file);
  log(
    `stream: ${file} (${(data.length / MiB).toFixed(1)} MiB), zstd level ${level}, ${runs} run(s) per method`,
  );

  const listener = await DwcpListener.listen({ port: 0, tls: dwcpTestTls().listen });
  const accepted = listener.accept();
  const src = await dialSession({ port: listener.port, streams: 4, tls: dwcpTestTls().dial });
  const dst = await accepted;
  const router = new ChannelRouter(dst);
  const rows: Row[] = [];
  const profileRows: { fn: string; self_ms: number; share: number }[] = [];
  const emit = (r: Row) => {
    rows.push(r);
    if (values.json) console.log(JSON.stringify(r));
    else log(`  ${r.method} run ${r.run}: ${r.wall_s} s, ${r.cpu_s} CPU-s, ${r.mib_per_cpu_s} MiB/CPU-s`);
  };
  const row = (method: Row["method"], run: number, m: { wall: number; cpu: number }, wire: number): Row => ({
    method,
    run,
    logical_bytes: data.length,
    wire_bytes: wire,
    wall_s: Number(m.wall.toFixed(3)),
    cpu_s: Number(m.cpu.toFixed(3)),
    mib_per_cpu_s: Number((data.length / MiB / m.cpu).toFixed(1)),
  });

  for (let run = 1; run <= runs; run++) {
    const m = await measure(() => tcpRun(data));
    emit(row("tcp", run, m, m.value.wire));
    // Fresh caches per run: `dwcp` cold, `dwcp-again` warm from it.
    const caches = mkdtempSync(path.join(tmpdir(), "nc-bench-relay-cache-"));
    const srcCache = new PageCache(path.join(caches, "src"), 4 * 1024 * MiB);
    const dstCache = new PageCache(path.join(caches, "dst"), 4 * 1024 * MiB);
    const history = new PageHistory(srcCache);
    try {
      for (const method of ["dwcp", "dwcp-again"] as const) {
        const label = `${method}-${run}`;
        const profiling = values.profile && method === "dwcp" && run === 1;
        const inspector = profiling ? new Session() : null;
        if (inspector) {
          inspector.connect();
          await inspector.post("Profiler.enable");
          await inspector.post("Profiler.start");
        }
        const m = await measure(async () => {
          const out = await sink();
          const target = new MigrationRelayTarget({ router, label, qemu: out.endpoint, cache: dstCache });
          const source = await MigrationRelaySource.start({
            session: src,
            label,
            level,
            history,
            maxInFlightBytes: 8 * MiB,
          });
          await writeStream(source.endpoint, data);
          await Promise.all([source.done, target.done]);
          if ((await out.received) !== data.length) throw new Error(`${method} lost bytes`);
          return source.stats().wireBytes;
        });
        if (inspector) {
          const { profile } = await inspector.post("Profiler.stop");
          inspector.disconnect();
          if (values["profile-out"]) writeFileSync(values["profile-out"], JSON.stringify(profile));
          profileRows.push(...topFunctions(profile, 15));
        }
        emit(row(method, run, m, m.value));
      }
    } finally {
      srcCache.close();
      dstCache.close();
      rmSync(caches, { recursive: true, force: true });
    }
  }
  src.destroy();
  dst.destroy();
  await listener.close();

  if (values.json) {
    for (const p of profileRows) console.log(JSON.stringify({ profile: "dwcp", ...p }));
    return;
  }
  const methods = ["tcp", "dwcp", "dwcp-again"] as const;
  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.floor((s.length - 1) / 2)]!;
  };
  const tcpCpu = median(rows.filter((r) => r.method === "tcp").map((r) => r.cpu_s));
  const table = [["method", "wall s", "CPU s", "MiB/CPU-s", "wire MiB", "CPU vs tcp"]];
  for (const method of methods) {
    const rs = rows.filter((r) => r.method === method);
    const cpu = median(rs.map((r) => r.cpu_s));
    table.push([
      method,
      median(rs.map((r) => r.wall_s)).toFixed(2),
      cpu.toFixed(2),
      median(rs.map((r) => r.mib_per_cpu_s)).toFixed(1),
      (median(rs.map((r) => r.wire_bytes)) / MiB).toFixed(1),
      `${(cpu / tcpCpu).toFixed(1)}x`,
    ]);
  }
  const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
  for (const r of table) console.log(r.map((c, i) => c.padEnd(widths[i]!)).join("  "));
  if (profileRows.length > 0) {
    console.log("\nTop CPU consumers of the first dwcp run (self time):");
    for (const p of profileRows)
      console.log(
        `${p.self_ms.toFixed(0).padStart(6)} ms  ${(p.share * 100).toFixed(1).padStart(5)} %  ${p.fn}`,
      );
  }
}

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  samples?: number[];
  timeDeltas?: number[];
}

/** Self time per function (name, file, line), largest first. */
function topFunctions(profile: CpuProfile, n: number): { fn: string; self_ms: number; share: number }[] {
  const byId = new Map(profile.nodes.map((x) => [x.id, x]));
  const self = new Map<string, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  let total = 0;
  for (let i = 0; i < samples.length; i++) {
    const node = byId.get(samples[i]!);
    if (!node) continue;
    const f = node.callFrame;
    // Native code has no URL; V8 names it after the nearest symbol it knows, which for an
    // addon may be any exported function of its library.
    const native = f.functionName.startsWith("(") ? "" : "[native]";
    const where = f.url ? `${path.basename(f.url)}:${f.lineNumber + 1}` : native;
    const key = `${f.functionName || "(anonymous)"} ${where}`.trim();
    const us = deltas[i] ?? 0;
    self.set(key, (self.get(key) ?? 0) + us);
    total += us;
  }
  return [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([fn, us]) => ({ fn, self_ms: us / 1000, share: total > 0 ? us / total : 0 }));
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  },
);
