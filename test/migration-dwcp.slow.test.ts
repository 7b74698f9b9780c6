/**
 * Live migration over DWCP with the system's QEMU (tcg; 10.0 here, 7.2 before) and the real
 * guest image: two "hosts" in this process joined by one DWCP session over loopback. Source QEMU → MigrationRelaySource
 * (page records through HDE, the rest verbatim) → DWCP → MigrationRelayTarget → destination
 * QEMU's incoming socket; the disk's NBD mirror rides the same session (ByteRelay). Each
 * host has one page cache, used as the store of its sent-page history and as its receive
 * cache, so the VM coming back finds its pages at home.
 *
 * 1. The parser on a freshly recorded stream (`migrate` to a file): every byte accounted
 *    for, page and zero counts equal QEMU's own, the machine type is what `-machine q35`
 *    resolves to in this QEMU.
 * 2. The relay cut mid-transfer: QEMU's migration fails, the VM keeps running at the source.
 * 3. A → B over DWCP: guest verifies memory and disk at B, heartbeats unbroken; the NBD
 *    splitter understood every mirror connection (QEMU ≥ 8.2 negotiates extended headers).
 * 4. B → A (warm cache at A, QEMU → relay over a unix socket): same checks, and far fewer
 *    wire bytes than the first time.
 *
 * The guest runs its memory dirtier (16 MiB at 2 MiB/s), so pre-copy takes several passes
 * and HDE sends deltas of rewritten pages; on QEMU 10 the guest must arrive intact anyway
 * (QEMU 7.2 under TCG corrupted such guests with no relay involved, docs/migration.md).
 */
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../src/agent/free-port.js";
import {
  diskNodeName,
  finishMirror,
  startMirror,
  startNbdExport,
  stopNbdExport,
  waitMirrorReady,
} from "../src/compute/qemu/block-mirror.js";
import { cont, queryStatus, queryVersion } from "../src/compute/qemu/commands.js";
import type { MachineConfig } from "../src/compute/qemu/machine.js";
import {
  continueSwitchover,
  DEFAULT_TUNING,
  MigrationError,
  type MigrationProgress,
  startIncoming,
  startOutgoing,
  waitForMigration,
} from "../src/compute/qemu/migration.js";
import { QemuProcess } from "../src/compute/qemu/process.js";
import { createOverlay } from "../src/compute/qemu/qemu-img.js";
import { dialSession } from "../src/dwcp/amst/dial.js";
import { DwcpListener } from "../src/dwcp/amst/listen.js";
import type { DwcpSession } from "../src/dwcp/amst/session.js";
import { PageHistory } from "../src/dwcp/hde/history.js";
import { PageCache } from "../src/dwcp/hde/page-cache.js";
import { waitFor } from "../src/lib/wait.js";
import { ChannelRouter } from "../src/migration/dwcp/channel-router.js";
import { NbdRelaySource, NbdRelayTarget } from "../src/migration/dwcp/nbd-relay.js";
import { MigrationRelaySource, type SourceRelayResult } from "../src/migration/dwcp/relay-source.js";
import { MigrationRelayTarget, type TargetRelayResult } from "../src/migration/dwcp/relay-target.js";
import { MigrationStreamParser } from "../src/migration/dwcp/stream-parser.js";
import { dwcpTestTls } from "../src/testing/tls-fixtures.js";
import { type Line, SerialTail } from "./helpers/serial-tail.js";

const execFileP = promisify(execFile);
const repoRoot = path.resolve(import.meta.dirname, "..");
const SEED = 4242;
const GUEST_PARAMS = `nc.pattern_seed=${SEED} nc.pattern_mem_mb=8 nc.pattern_disk_mb=8 nc.verify_every=2 nc.dirty_mb=16 nc.dirty_rate_mbps=2`;
const HOST = "127.0.0.1";
const JOB = "dwcp-vda";
const EXPORT = "vda";
const HEARTBEAT = /^NC-HEARTBEAT seq=(\d+) uptime=(\d+\.\d+)$/;
const VERIFY_PASS = new RegExp(`^NC-VERIFY PASS seed=${SEED} mem_mb=8 disk_mb=8 round=(\\d+)$`);

// ------------------------------------------------------------------ serial console ----

// ------------------------------------------------------------------ hosts and VMs ------

interface Vm {
  proc: QemuProcess;
  cfg: MachineConfig;
  serial: SerialTail;
}

interface Host {
  name: string;
  session: DwcpSession;
  router: ChannelRouter;
  cache: PageCache;
  history: PageHistory;
  /** Disk blocks last sent or received (page number = offset / 4096). */
  diskHistory: PageHistory;
}

let root: string;
let kernel: string;
let initrd: string;
let baseDisk: string;
let cmdline: string;
const vmId = randomUUID();
const started: Vm[] = [];
let listener: DwcpListener;
let hostA: Host;
let hostB: Host;
let vm: Vm;

async function launch(name: string, incoming: boolean): Promise<Vm> {
  const diskPath = path.join(root, `${name}.qcow2`);
  await createOverlay(baseDisk, "qcow2", diskPath);
  const cfg: MachineConfig = {
    vmId,
    name: `dwcp-${name}`,
    vcpus: 1,
    memoryMiB: 128,
    accel: "tcg",
    diskPath,
    kernelPath: kernel,
    initrdPath: initrd,
    kernelCmdline: cmdline,
    runDir: path.join(root, name),
    ...(incoming ? { incoming: "defer" as const } : {}),
  };
  const proc = await QemuProcess.launch(cfg);
  const v = { proc, cfg, serial: new SerialTail(path.join(cfg.runDir, "serial.log")) };
  started.push(v);
  return v;
}

function beats(lines: Line[]): { seq: number; uptime: number }[] {
  return lines.flatMap((l) => {
    const m = HEARTBEAT.exec(l.text);
    return m ? [{ seq: Number(m[1]), uptime: Number(m[2]) }] : [];
  });
}

interface Moved {
  dst: Vm;
  done: MigrationProgress;
  source: SourceRelayResult;
  target: TargetRelayResult;
  disk: ReturnType<NbdRelaySource["stats"]>;
  sessionBytes: number;
}

/**
 * Moves the VM from `from` (running on host X) to a new QEMU on host Y: NBD mirror and
 * memory both over the X–Y DWCP session, switch-over at pre-switchover, destination resumed.
 */
async function migrateOverDwcp(from: Vm, x: Host, y: Host, name: string, unixSocket = false): Promise<Moved> {
  const dst = await launch(name, true);
  const [migPort, nbdPort] = [await freePort(HOST), await freePort(HOST)];
  await startIncoming(dst.proc.qmp, { host: HOST, port: migPort }, DEFAULT_TUNING);
  await startNbdExport(dst.proc.qmp, {
    host: HOST,
    port: nbdPort,
    exportName: EXPORT,
    nodeName: await diskNodeName(dst.proc.qmp),
  });

  // Host Y: the channels' far ends.
  const nbdTarget = new NbdRelayTarget({
    router: y.router,
    label: `${name}/nbd`,
    target: { port: nbdPort },
    cache: y.cache,
    history: y.diskHistory,
  });
  const target = new MigrationRelayTarget({
    router: y.router,
    label: `${name}/mem`,
    qemu: { port: migPort },
    cache: y.cache,
    history: y.history,
  });
  // Host X: the local ends QEMU connects to.
  const nbdSource = await NbdRelaySource.start({
    session: x.session,
    label: `${name}/nbd`,
    history: x.diskHistory,
  });
  const bytesBefore = x.session.stats().bytesWritten;
  await startMirror(from.proc.qmp, {
    jobId: JOB,
    sourceNode: "drive-vda",
    nbd: { host: HOST, port: (nbdSource.endpoint as { port: number }).port, exportName: EXPORT },
  });
  await waitMirrorReady(from.proc.qmp, JOB, { timeoutMs: 60_000 });
  const relay = await MigrationRelaySource.start({
    session: x.session,
    label: `${name}/mem`,
    history: x.history,
    ...(unixSocket ? { listen: { path: path.join(root, `${name}-mig.sock`) } } : {}),
  });
  if (unixSocket) expect(relay.uri).toMatch(/^unix:/);
  await startOutgoing(from.proc.qmp, relay.uri, DEFAULT_TUNING, { pauseBeforeSwitchover: true });

  const paused = await waitForMigration(from.proc.qmp, { timeoutMs: 90_000, pollMs: 100 });
  expect(paused.status).toBe("pre-switchover");
  await finishMirror(from.proc.qmp, JOB);
  await continueSwitchover(from.proc.qmp);
  const done = await waitForMigration(from.proc.qmp, { timeoutMs: 60_000, pollMs: 50, resolveOn: [] });
  expect(done.status).toBe("completed");
  // The relay's verdict: the destination QEMU got exactly the source's bytes (SHA-256 end to end).
  const [source, tgt] = await Promise.all([relay.done, target.done]);

  await waitFor(async () => (await queryStatus(dst.proc.qmp)).status !== "inmigrate", {
    timeoutMs: 20_000,
    what: "the destination to load the VM",
  });
  expect(await queryStatus(dst.proc.qmp)).toEqual({ status: "paused", running: false });
  await stopNbdExport(dst.proc.qmp, EXPORT);
  await cont(dst.proc.qmp);
  await nbdSource.close();
  await nbdTarget.idle();
  expect(nbdSource.error).toBeNull();
  expect(nbdTarget.error).toBeNull();
  // The mirror's flushes (at ready, at the guest's stop, at its end) were answered by the
  // source relay, and every one was confirmed by the destination's export.
  const { flushes } = nbdSource.stats();
  expect(flushes.answered).toBeGreaterThan(0);
  expect(flushes.confirmed).toBe(flushes.answered);
  return {
    dst,
    done,
    source,
    target: tgt,
    disk: nbdSource.stats(),
    sessionBytes: x.session.stats().bytesWritten - bytesBefore,
  };
}

/** The guest went on at `to` where it stopped at `from`: no reboot, next heartbeat, a later PASS. */
async function expectContinued(from: Vm, to: Vm): Promise<void> {
  await from.serial.poll();
  const before = beats(from.serial.lines);
  const last = before.at(-1)!;
  const lastRound = Math.max(0, ...from.serial.lines.map((l) => Number(VERIFY_PASS.exec(l.text)?.[1] ?? 0)));
  const pass = await to.serial.waitLine(VERIFY_PASS, { timeoutMs: 45_000 });
  expect(Number(VERIFY_PASS.exec(pass.text)![1])).toBeGreaterThan(lastRound);
  // The verification line can come before the destination's first heartbeat line.
  await to.serial.waitLine(HEARTBEAT, { timeoutMs: 10_000 });
  const after = beats(to.serial.lines);
  expect(after.length).toBeGreaterThan(0);
  expect(after[0]!.seq).toBe(last.seq + 1);
  after.forEach((b, i) => {
    if (i > 0) expect(b.seq).toBe(after[i - 1]!.seq + 1);
  });
  for (const bad of ["NC-READY", "NC-VERIFY FAIL", "NC-ERROR"])
    expect(to.serial.lines.some((l) => l.text.startsWith(bad))).toBe(false);
}

function report(label: string, m: Moved): string {
  const s = m.source.stats;
  const mib = (n: number) => (n / 1048576).toFixed(1);
  return (
    `[migration-dwcp] ${label}: logical ${mib(s.logicalBytes)} MiB, relay wire ${mib(s.wireBytes)} MiB ` +
    `(session ${mib(m.sessionBytes)} MiB incl. disk), ratio ${s.ratio.toFixed(1)}x; pages ${s.pages.total} ` +
    `(zero ${s.pages.zero}, ref ${s.pages.ref}, delta ${s.pages.delta}, full ${s.pages.full}), ` +
    `QEMU zero records ${s.qemuZeroPages}; parser ${s.parserMode} (${s.parserReason}); ` +
    `QEMU downtime ${m.done.downtimeMs} ms, total ${m.done.totalTimeMs} ms, ${m.done.pass} dirty syncs; ` +
    `disk: ${m.disk.connections} NBD connection(s) (splitter fallbacks: ${m.disk.fallbacks.join("; ") || "none"}), ` +
    `flushes answered at the source ${m.disk.flushes.answered} (confirmed ${m.disk.flushes.confirmed}), ` +
    `${mib(m.disk.logicalBytes)} MiB -> ${mib(m.disk.wireBytes)} MiB ` +
    `wire, blocks ${m.disk.pages.total} (zero ${m.disk.pages.zero}, ref ${m.disk.pages.ref}, ` +
    `delta ${m.disk.pages.delta}, full ${m.disk.pages.full})`
  );
}

// ------------------------------------------------------------------ the suite ----------

beforeAll(async () => {
  const { stdout } = await execFileP(path.join(repoRoot, "images", "build.sh"), [], {
    timeout: 240_000,
    maxBuffer: 8 << 20,
  });
  const manifestPath = stdout.trim().split("\n").at(-1)!;
  const manifest = JSON.parse(await readFile(manifestPath, "utf8")) as Record<string, string>;
  const dir = path.dirname(manifestPath);
  kernel = path.join(dir, manifest.kernel!);
  initrd = path.join(dir, manifest.initrd!);
  baseDisk = path.join(dir, manifest.disk!);
  cmdline = `${manifest.cmdline} ${GUEST_PARAMS}`;
  root = await mkdtemp("/tmp/nc-mig-dwcp-");

  listener = await DwcpListener.listen({ port: 0, tls: dwcpTestTls().listen });
  const accepted = listener.accept();
  const dialed = await dialSession({ port: listener.port, tls: dwcpTestTls().dial });
  const listened = await accepted;
  const host = (name: string, session: DwcpSession): Host => {
    const cache = new PageCache(path.join(root, `cache-${name}`), 512 << 20);
    return {
      name,
      session,
      router: new ChannelRouter(session),
      cache,
      history: new PageHistory(cache),
      diskHistory: new PageHistory(cache),
    };
  };
  hostA = host("a", dialed);
  hostB = host("b", listened);

  vm = await launch("a1", false);
  await vm.serial.waitLine(/^NC-VERIFY PASS seed=4242 .* round=1$/, { timeoutMs: 90_000 });
}, 300_000);

afterAll(async () => {
  for (const v of started) {
    v.serial.stop();
    await v.proc.kill().catch(() => {});
  }
  hostA?.session.destroy();
  hostB?.session.destroy();
  await listener?.close();
  if (root && !process.env.NC_KEEP_TMP) await rm(root, { recursive: true, force: true });
});

describe("live migration over DWCP (the system's QEMU, tcg)", () => {
  it("splits a freshly recorded stream: every byte accounted for, page counts equal QEMU's", async () => {
    const file = path.join(root, "recorded.stream");
    // The recording stops the guest; a snapshot of a guest that then goes on running.
    await startOutgoing(vm.proc.qmp, `exec:cat > ${file}`, DEFAULT_TUNING);
    await waitForMigration(vm.proc.qmp, { timeoutMs: 60_000, pollMs: 100, resolveOn: [] });
    const qemuSays = await vm.proc.qmp.execute<{ ram?: { normal?: number; duplicate?: number } }>(
      "query-migrate",
    );
    const machines = await vm.proc.qmp.execute<{ name: string; alias?: string }[]>("query-machines");
    const version = await queryVersion(vm.proc.qmp);
    await cont(vm.proc.qmp);
    const data = await readFile(file);
    const parser = new MigrationStreamParser();
    let out = 0;
    let pages = 0;
    for (let off = 0, i = 0; off < data.length; i++) {
      const n = 1 + ((i * 7919) % 70_000);
      for (const e of parser.push(data.subarray(off, off + n))) {
        out += e.data.length;
        if (e.kind === "page") pages++;
      }
      off += n;
    }
    const end = parser.end();
    for (const e of end.events) out += e.data.length;
    expect(out).toBe(data.length);
    expect(end.truncated).toBe(false);
    expect(parser.mode).toBe("tail");
    // What "-machine q35" resolved to: pc-q35-10.0 on QEMU 10.0, pc-q35-7.2 on 7.2.
    expect(parser.machine).toBe(machines.find((m) => m.alias === "q35")?.name);
    expect(pages).toBe(qemuSays.ram?.normal);
    expect(parser.stats.zeroPages).toBe(qemuSays.ram?.duplicate);
    const { major, minor, micro } = version.qemu;
    console.log(
      `[migration-dwcp] QEMU ${major}.${minor}.${micro} (${parser.machine}) recorded ${data.length} bytes: ` +
        `${pages} pages, ${parser.stats.zeroPages} zero records, ${parser.stats.commands} commands, ` +
        `${parser.stats.ramSections} RAM sections (QEMU: ${qemuSays.ram?.normal} normal, ${qemuSays.ram?.duplicate} duplicate)`,
    );
    expect(parser.stats.pageBytes).toBe(pages * 4096);
    expect(await queryStatus(vm.proc.qmp)).toEqual({ status: "running", running: true });
  });

  it("fails cleanly when the relay dies mid-transfer: the VM keeps running and verifying at the source", async () => {
    const dst = await launch("b0", true);
    const migPort = await freePort(HOST);
    await startIncoming(dst.proc.qmp, { host: HOST, port: migPort }, DEFAULT_TUNING);
    const target = new MigrationRelayTarget({
      router: hostB.router,
      label: "b0/mem",
      qemu: { port: migPort },
      cache: hostB.cache,
    });
    const relay = await MigrationRelaySource.start({ session: hostA.session, label: "b0/mem" });
    // Slow enough to still be copying RAM when the relay is cut.
    const slow = { ...DEFAULT_TUNING, maxBandwidthBytesPerSec: 4 * 1024 * 1024 };
    await startOutgoing(vm.proc.qmp, relay.uri, slow);
    const waiting = waitForMigration(vm.proc.qmp, { timeoutMs: 60_000, pollMs: 100 }).catch(
      (e: unknown) => e,
    );
    await waitFor(() => relay.stats().deliveredBytes > 2 * 1024 * 1024, {
      timeoutMs: 30_000,
      what: "2 MiB relayed",
    });
    relay.abort("cut by the test");
    const err = (await waiting) as MigrationError;
    expect(err).toBeInstanceOf(MigrationError);
    expect(err.reason).toBe("failed");
    await expect(relay.done).rejects.toMatchObject({ code: "NOVA_MIGRATION_RELAY" });
    await expect(target.done).rejects.toThrow();
    // The destination QEMU gives up on its incoming migration by itself.
    const exit = await dst.proc.exited;
    expect(exit).toBeTruthy();
    expect(await queryStatus(vm.proc.qmp)).toEqual({ status: "running", running: true });
    const from = vm.serial.lines.length;
    await vm.serial.waitLine(VERIFY_PASS, { timeoutMs: 30_000, from });
    expect(vm.serial.lines.some((l) => l.text.startsWith("NC-VERIFY FAIL"))).toBe(false);
  });

  it("moves the running VM A → B over DWCP: guest verifies memory and disk, heartbeats unbroken", async () => {
    const moved = await migrateOverDwcp(vm, hostA, hostB, "b1");
    console.log(report("A→B (cold cache)", moved));
    await expectContinued(vm, moved.dst);
    const s = moved.source.stats;
    expect(s.parserMode).toBe("tail");
    expect(s.logicalBytes).toBe(moved.target.bytes);
    expect(s.pages.total).toBeGreaterThan(1000);
    expect(s.wireBytes).toBeLessThan(s.logicalBytes);
    // The mirror's writes (the guest's 8 MiB disk pattern at least) travelled as blocks.
    expect(moved.disk.fallbacks).toEqual([]);
    expect(moved.disk.pages.total).toBeGreaterThanOrEqual(2048);
    await vm.proc.kill();
    firstWire = s.wireBytes;
    firstDiskWire = moved.disk.wireBytes;
    vm = moved.dst;
  });

  it("moves it back B → A: A's cache is warm, far fewer wire bytes", async () => {
    // QEMU → relay over a unix socket this time (smaller kernel buffers than loopback TCP).
    const moved = await migrateOverDwcp(vm, hostB, hostA, "a2", true);
    console.log(report("B→A (warm cache)", moved));
    await expectContinued(vm, moved.dst);
    const s = moved.source.stats;
    console.log(
      `[migration-dwcp] warm/cold wire bytes: ${s.wireBytes} / ${firstWire} = ${(s.wireBytes / firstWire).toFixed(3)}`,
    );
    expect(s.pages.ref).toBeGreaterThan(s.pages.full);
    expect(s.wireBytes).toBeLessThan(firstWire * 0.3);
    // Disk blocks A sent on the way out are in A's cache: they come back as references.
    expect(moved.disk.pages.ref).toBeGreaterThan(moved.disk.pages.full);
    expect(moved.disk.wireBytes).toBeLessThan(firstDiskWire * 0.3);
    await vm.proc.kill();
    vm = moved.dst;
  });
});

let firstWire = 0;
let firstDiskWire = 0;
