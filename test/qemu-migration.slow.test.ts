/**
 * Live migration with the QEMU driver against real QEMU (tcg) and the real guest image:
 * memory with migration.ts, the disk with block-mirror.ts (NBD export on the destination,
 * blockdev-mirror sync=top from the source), both QEMUs on this machine with separate
 * overlays over the same base image, as two hosts without shared storage would have.
 *
 * The tests run in order on one source VM: the cancelled and the failed migration must
 * leave a source that keeps running, keeps verifying its memory and disk pattern, and can
 * still be migrated; so must a migration that completed but whose destination never
 * started. The fourth test then moves the VM, and the fifth moves it on once more with
 * post-copy. Guests are 256 MiB; every QEMU is killed in afterAll.
 */
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort as kernelFreePort } from "../src/agent/free-port.js";
import {
  cancelMirror,
  diskNodeName,
  finishMirror,
  mirrorTargetNodeName,
  queryMirror,
  startMirror,
  startNbdExport,
  stopNbdExport,
  waitMirrorReady,
} from "../src/compute/qemu/block-mirror.js";
import {
  cont,
  queryJobs,
  queryNamedBlockNodes,
  queryStatus,
  quit,
  stop,
} from "../src/compute/qemu/commands.js";
import type { MachineConfig } from "../src/compute/qemu/machine.js";
import {
  cancelOutgoing,
  continueSwitchover,
  DEFAULT_TUNING,
  MigrationError,
  type MigrationProgress,
  type MigrationTuning,
  queryMigration,
  resumeSourceAfterSwitchover,
  startIncoming,
  startOutgoing,
  startPostcopy,
  tcpUri,
  validateTuning,
  waitForMigration,
} from "../src/compute/qemu/migration.js";
import { QemuProcess } from "../src/compute/qemu/process.js";
import { createOverlay } from "../src/compute/qemu/qemu-img.js";
import { waitFor } from "../src/lib/wait.js";
import { type Line, SerialTail } from "./helpers/serial-tail.js";

const execFileP = promisify(execFile);
const repoRoot = path.resolve(import.meta.dirname, "..");
const GUEST_PARAMS =
  "nc.pattern_seed=99 nc.pattern_mem_mb=8 nc.pattern_disk_mb=8 nc.verify_every=2 nc.dirty_mb=32 nc.dirty_rate_mbps=4";
const HOST = "127.0.0.1";
const JOB = "migr-vda";
const EXPORT = "vda";
/** Slow enough that 256 MiB of guest RAM (~90 MiB of it non-zero) cannot finish during the test. */
const THROTTLED: MigrationTuning = { ...DEFAULT_TUNING, maxBandwidthBytesPerSec: 1024 * 1024 };

// ------------------------------------------------------------------ serial console ----

const HEARTBEAT = /^NC-HEARTBEAT seq=(\d+) uptime=(\d+\.\d+)$/;
const VERIFY_PASS = /^NC-VERIFY PASS seed=99 mem_mb=8 disk_mb=8 round=(\d+)$/;

interface Beat {
  seq: number;
  uptime: number;
  at: number;
}

function beats(lines: Line[]): Beat[] {
  return lines.flatMap((l) => {
    const m = HEARTBEAT.exec(l.text);
    return m ? [{ seq: Number(m[1]), uptime: Number(m[2]), at: l.at }] : [];
  });
}

// ------------------------------------------------------------------ VMs ----------------

interface Vm {
  proc: QemuProcess;
  cfg: MachineConfig;
  serial: SerialTail;
}

let root: string;
let kernel: string;
let initrd: string;
let baseDisk: string;
let cmdline: string;
const vmId = randomUUID();
const started: Vm[] = [];
let source: Vm;

async function launch(name: string, incoming: boolean): Promise<Vm> {
  const diskPath = path.join(root, `${name}.qcow2`);
  await createOverlay(baseDisk, "qcow2", diskPath);
  const cfg: MachineConfig = {
    vmId,
    name: `mig-${name}`,
    vcpus: 1,
    memoryMiB: 256,
    accel: "tcg",
    diskPath,
    kernelPath: kernel,
    initrdPath: initrd,
    kernelCmdline: cmdline,
    runDir: path.join(root, name),
    ...(incoming ? { incoming: "defer" as const } : {}),
  };
  const proc = await QemuProcess.launch(cfg);
  const vm = { proc, cfg, serial: new SerialTail(path.join(cfg.runDir, "serial.log")) };
  started.push(vm);
  return vm;
}

/**
 * A free port from the kernel (bind to port 0). Probing fixed numbers is flaky: a port in
 * the ephemeral range can be taken by any outgoing connection between probe and use.
 */
function freePort(): Promise<number> {
  return kernelFreePort(HOST);
}

interface Prepared {
  dst: Vm;
  uri: string;
}

/** Destination listening for memory and serving its disk over NBD; source mirroring into it, in sync. */
async function prepare(from: Vm, name: string, tuning: MigrationTuning): Promise<Prepared> {
  const dst = await launch(name, true);
  expect(await queryStatus(dst.proc.qmp)).toMatchObject({ status: "inmigrate" });
  const [migPort, nbdPort] = [await freePort(), await freePort()];
  await startIncoming(dst.proc.qmp, { host: HOST, port: migPort }, tuning);
  const nodeName = await diskNodeName(dst.proc.qmp);
  await startNbdExport(dst.proc.qmp, { host: HOST, port: nbdPort, exportName: EXPORT, nodeName });
  await startMirror(from.proc.qmp, {
    jobId: JOB,
    sourceNode: "drive-vda",
    nbd: { host: HOST, port: nbdPort, exportName: EXPORT },
  });
  let copied = 0;
  await waitMirrorReady(from.proc.qmp, JOB, {
    timeoutMs: 30_000,
    onProgress: (offset) => {
      copied = offset;
    },
  });
  // The guest wrote an 8 MiB pattern plus a header block into its overlay.
  expect(copied).toBeGreaterThanOrEqual(8 * 1024 * 1024);
  return { dst, uri: tcpUri(HOST, migPort) };
}

async function expectNoMirrorLeft(vm: Vm): Promise<void> {
  expect(await queryJobs(vm.proc.qmp)).toEqual([]);
  expect(await queryNamedBlockNodes(vm.proc.qmp)).not.toContain(mirrorTargetNodeName(JOB));
}

/** Waits until the outgoing migration has moved at least `bytes`. */
async function transferring(vm: Vm, bytes: number): Promise<MigrationProgress> {
  return waitFor(
    async () => {
      const p = await queryMigration(vm.proc.qmp);
      return p.status === "active" && p.transferredBytes >= bytes ? p : undefined;
    },
    { timeoutMs: 20_000, intervalMs: 50, what: `${bytes} bytes migrated` },
  );
}

/** The guest keeps running at `vm`: QEMU says so and a new verification round passes. */
async function expectStillVerifying(vm: Vm): Promise<void> {
  expect(await queryStatus(vm.proc.qmp)).toEqual({ status: "running", running: true });
  const from = vm.serial.lines.length;
  await vm.serial.waitLine(VERIFY_PASS, { timeoutMs: 20_000, from });
  expect(vm.serial.lines.some((l) => l.text.startsWith("NC-VERIFY FAIL"))).toBe(false);
}

/**
 * The source's half of the switch-over with disk, once memory is moving: wait for
 * pre-switchover (vCPUs stopped), finish the mirror, continue, wait for completion.
 */
async function completeAtSource(from: Vm, atPause?: () => Promise<void>): Promise<MigrationProgress> {
  const q = from.proc.qmp;
  const paused = await waitForMigration(q, { timeoutMs: 60_000, pollMs: 200 });
  expect(paused.status).toBe("pre-switchover");
  expect(await queryStatus(q)).toMatchObject({ running: false });
  await atPause?.();
  await finishMirror(q, JOB);
  await expectNoMirrorLeft(from);
  await continueSwitchover(q);
  const done = await waitForMigration(q, { timeoutMs: 30_000, pollMs: 50, resolveOn: [] });
  expect(done.status).toBe("completed");
  // QEMU reports "completed" from the migration thread a moment before its main loop moves
  // the run state from "finish-migrate" to "postmigrate" (seen on QEMU 10 under load).
  await waitFor(async () => (await queryStatus(q)).status !== "finish-migrate", {
    timeoutMs: 5_000,
    intervalMs: 10,
    what: "the source to leave finish-migrate",
  });
  expect(await queryStatus(q)).toEqual({ status: "postmigrate", running: false });
  return done;
}

/** Runs a qemu-io command on the VM's drive through HMP (qemu-io prints its result to QEMU's stdout). */
async function qemuIo(vm: Vm, command: string): Promise<void> {
  await vm.proc.qmp.execute("human-monitor-command", { "command-line": `qemu-io drive-vda "${command}"` });
}

/**
 * Reads the VM's disk image from the host, through its backing chain, with qemu-io.
 * `stop` first makes QEMU flush its qcow2 metadata; the guest resumes right after.
 */
async function readImageFromHost(vm: Vm, command: string): Promise<string> {
  await stop(vm.proc.qmp);
  try {
    const args = ["-U", "-r", "-f", "qcow2", "-c", command, vm.cfg.diskPath];
    // qemu-io exits non-zero on a pattern mismatch; its stdout says where.
    const { stdout } = await execFileP("qemu-io", args).catch((err: { stdout?: string }) => ({
      stdout: err.stdout ?? String(err),
    }));
    return stdout;
  } finally {
    await cont(vm.proc.qmp);
  }
}

/** The destination's half: it holds the VM, paused (autostart off); close the export and run it. */
async function startAtDestination(dst: Vm): Promise<void> {
  const d = dst.proc.qmp;
  await waitFor(async () => (await queryStatus(d)).status !== "inmigrate", {
    timeoutMs: 10_000,
    what: "the destination to leave inmigrate",
  });
  expect(await queryStatus(d)).toEqual({ status: "paused", running: false });
  await stopNbdExport(d, EXPORT);
  await cont(d);
  expect(await queryStatus(d)).toEqual({ status: "running", running: true });
}

/** Checks that the guest went on at `to` where it stopped at `from`, and returns the heartbeat gap. */
async function expectContinued(from: Vm, to: Vm): Promise<{ uptimeGapS: number; wallGapMs: number }> {
  await from.serial.poll();
  const before = beats(from.serial.lines);
  const last = before.at(-1)!;
  const lastRound = Math.max(...from.serial.lines.map((l) => Number(VERIFY_PASS.exec(l.text)?.[1] ?? 0)));
  // A later verification round at the destination: memory and disk content arrived intact.
  const pass = await to.serial.waitLine(VERIFY_PASS, { timeoutMs: 30_000 });
  expect(Number(VERIFY_PASS.exec(pass.text)![1])).toBeGreaterThan(lastRound);
  // The verification line can come before the destination's first heartbeat line.
  await to.serial.waitLine(/^NC-HEARTBEAT/, { timeoutMs: 10_000 });
  const after = beats(to.serial.lines);
  expect(after.length).toBeGreaterThan(0);
  // No reboot: the counter goes on from the source's last value, one by one, with no NC-READY.
  expect(after[0]!.seq).toBe(last.seq + 1);
  after.forEach((b, i) => {
    if (i > 0) expect(b.seq).toBe(after[i - 1]!.seq + 1);
  });
  expect(to.serial.lines.some((l) => l.text.startsWith("NC-READY"))).toBe(false);
  expect(to.serial.lines.some((l) => l.text.startsWith("NC-VERIFY FAIL"))).toBe(false);
  expect(to.serial.lines.some((l) => l.text.startsWith("NC-ERROR"))).toBe(false);
  return { uptimeGapS: after[0]!.uptime - last.uptime, wallGapMs: after[0]!.at - last.at };
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
  root = await mkdtemp("/tmp/nc-mig-");
  source = await launch("src", false);
  await source.serial.waitLine(/^NC-VERIFY PASS seed=99 .* round=1$/, { timeoutMs: 90_000 });
}, 300_000);

afterAll(async () => {
  for (const vm of started) {
    vm.serial.stop();
    await vm.proc.kill().catch(() => {});
  }
  if (root) await rm(root, { recursive: true, force: true });
});

describe("live migration with disk between hosts without shared storage (real QEMU, tcg)", () => {
  it("keeps the VM running and verifying at the source when the migration is cancelled mid-transfer", async () => {
    const prepared = await prepare(source, "dst-cancel", THROTTLED);
    await startOutgoing(source.proc.qmp, prepared.uri, THROTTLED, { pauseBeforeSwitchover: true });
    const waiting = waitForMigration(source.proc.qmp, { timeoutMs: 60_000 }).catch((e: unknown) => e);
    const mid = await transferring(source, 512 * 1024);
    expect(mid.remainingBytes).toBeGreaterThan(0);

    const final = await cancelOutgoing(source.proc.qmp);
    expect(final.status).toBe("cancelled");
    const err = await waiting;
    expect(err).toBeInstanceOf(MigrationError);
    expect((err as MigrationError).reason).toBe("cancelled");

    await cancelMirror(source.proc.qmp, JOB);
    await expectNoMirrorLeft(source);
    await cancelMirror(source.proc.qmp, JOB); // idempotent
    await prepared.dst.proc.kill();
    await expectStillVerifying(source);
  });

  it("keeps the VM running at the source when the destination QEMU dies mid-transfer", async () => {
    const prepared = await prepare(source, "dst-dies", THROTTLED);
    await startOutgoing(source.proc.qmp, prepared.uri, THROTTLED, { pauseBeforeSwitchover: true });
    const waiting = waitForMigration(source.proc.qmp, { timeoutMs: 60_000, pollMs: 100 }).catch(
      (e: unknown) => e,
    );
    await transferring(source, 512 * 1024);
    await prepared.dst.proc.kill();

    const err = await waiting;
    expect(err).toBeInstanceOf(MigrationError);
    const failure = err as MigrationError;
    expect(failure.reason).toBe("failed");
    expect(failure.code).toBe("NOVA_QEMU_ERROR");
    expect(failure.retryable).toBe(true);
    expect(failure.progress?.errorDesc).toBeTruthy();
    expect(failure.message).toContain(failure.progress!.errorDesc!);

    await cancelMirror(source.proc.qmp, JOB);
    await expectNoMirrorLeft(source);
    await expectStillVerifying(source);
  });

  it("resumes the VM at the source, disks re-activated, when the migration completed but the destination cannot be started", async () => {
    const prepared = await prepare(source, "dst-unstarted", DEFAULT_TUNING);
    await startOutgoing(source.proc.qmp, prepared.uri, DEFAULT_TUNING, { pauseBeforeSwitchover: true });
    await completeAtSource(source);
    // The destination holds the whole VM but never ran it; it dies before `cont`.
    await prepared.dst.proc.kill();
    await resumeSourceAfterSwitchover(source.proc.qmp);
    // The guest's verification reads the disk with O_DIRECT: it passes only on active disks.
    await expectStillVerifying(source);
  });

  it("moves the running VM with its disk: no reboot, heartbeats go on, the guest verifies memory and disk at the destination", async () => {
    const prepared = await prepare(source, "dst-a", DEFAULT_TUNING);
    // Disk writes outside the guest's pattern area, beyond what the initial copy saw: one
    // while the mirror runs in sync, one at pre-switchover (vCPUs stopped, not yet copied).
    await qemuIo(source, "write -P 0x5a 32M 64k");
    const seen: MigrationProgress[] = [];
    await startOutgoing(source.proc.qmp, prepared.uri, DEFAULT_TUNING, { pauseBeforeSwitchover: true });
    const progress = waitForMigration(source.proc.qmp, {
      timeoutMs: 60_000,
      pollMs: 100,
      onProgress: (p) => seen.push(p),
    });
    await progress;
    const done = await completeAtSource(source, async () => {
      await qemuIo(source, "write -P 0xa5 40M 64k");
    });
    await startAtDestination(prepared.dst);
    // Progress was reported while RAM was being copied (total = guest RAM plus ROMs).
    expect(seen.some((p) => p.status === "active" && p.totalBytes >= 256 * 1024 * 1024)).toBe(true);

    await quit(source.proc.qmp);
    await source.proc.exited;
    const gap = await expectContinued(source, prepared.dst);

    // The mirror, and finishMirror's final sync at pre-switchover, carried both writes.
    expect(await readImageFromHost(prepared.dst, "read -P 0x5a 32M 64k")).toMatch(/^read 65536\/65536/);
    expect(await readImageFromHost(prepared.dst, "read -P 0xa5 40M 64k")).toMatch(/^read 65536\/65536/);

    expect(done.downtimeMs).toBeGreaterThan(0);
    expect(done.downtimeMs).toBeLessThan(5_000);
    expect(done.transferredBytes).toBeGreaterThan(8 * 1024 * 1024);
    expect(gap.uptimeGapS).toBeGreaterThan(0);
    expect(gap.uptimeGapS).toBeLessThan(3);
    console.log(
      `[migration] pre-copy + disk mirror: QEMU downtime ${done.downtimeMs} ms, total ${done.totalTimeMs} ms, ` +
        `${(done.transferredBytes / 1048576).toFixed(1)} MiB sent in ${done.pass} passes; heartbeat gap: ` +
        `guest uptime +${gap.uptimeGapS.toFixed(2)} s, wall clock ${gap.wallGapMs} ms (heartbeats are 1 s apart)`,
    );
    source = prepared.dst;
  });

  it("moves it on again with post-copy, finishing the disk mirror at the post-copy switch-over", async () => {
    const tuning: MigrationTuning = { ...THROTTLED, postcopy: true };
    const prepared = await prepare(source, "dst-b", tuning);
    await startOutgoing(source.proc.qmp, prepared.uri, tuning, { pauseBeforeSwitchover: true });
    await transferring(source, 512 * 1024);
    await startPostcopy(source.proc.qmp);
    const paused = await waitForMigration(source.proc.qmp, { timeoutMs: 30_000, pollMs: 50 });
    expect(paused.status).toBe("pre-switchover");
    await finishMirror(source.proc.qmp, JOB);
    await continueSwitchover(source.proc.qmp);
    const post = await waitForMigration(source.proc.qmp, {
      timeoutMs: 30_000,
      pollMs: 50,
      resolveOn: ["postcopy-active"],
    });
    expect(post.status).toBe("postcopy-active");
    // The destination runs the guest from here on; the rest of the RAM is pulled on demand.
    await expect(cancelOutgoing(source.proc.qmp)).rejects.toMatchObject({ code: "NOVA_ILLEGAL_STATE" });
    const d = prepared.dst.proc.qmp;
    await stopNbdExport(d, EXPORT);
    await cont(d);
    const done = await waitForMigration(source.proc.qmp, { timeoutMs: 60_000, pollMs: 100, resolveOn: [] });
    expect(done.status).toBe("completed");
    expect(await queryStatus(d)).toEqual({ status: "running", running: true });
    expect(await queryMirror(source.proc.qmp, JOB)).toBeUndefined();

    await quit(source.proc.qmp);
    await source.proc.exited;
    const gap = await expectContinued(source, prepared.dst);
    console.log(
      `[migration] post-copy + disk mirror: QEMU downtime ${done.downtimeMs} ms, total ${done.totalTimeMs} ms; ` +
        `heartbeat gap: guest uptime +${gap.uptimeGapS.toFixed(2)} s, wall clock ${gap.wallGapMs} ms`,
    );
    source = prepared.dst;
  });

  it("moves it on again with multifd (4 channels, zstd) and the guest still verifies", async () => {
    const tuning: MigrationTuning = { ...DEFAULT_TUNING, multifd: { channels: 4, compression: "zstd" } };
    const prepared = await prepare(source, "dst-c", tuning);
    await startOutgoing(source.proc.qmp, prepared.uri, tuning, { pauseBeforeSwitchover: true });
    await waitForMigration(source.proc.qmp, { timeoutMs: 60_000, pollMs: 100 });
    const done = await completeAtSource(source);
    await startAtDestination(prepared.dst);
    await quit(source.proc.qmp);
    await source.proc.exited;
    const gap = await expectContinued(source, prepared.dst);
    expect(done.status).toBe("completed");
    console.log(
      `[migration] multifd 4 x zstd + disk mirror: QEMU downtime ${done.downtimeMs} ms, total ${done.totalTimeMs} ms, ` +
        `${(done.transferredBytes / 1048576).toFixed(1)} MiB sent; heartbeat gap +${gap.uptimeGapS.toFixed(2)} s`,
    );
    source = prepared.dst;
  });

  it("moves it on once more without multifd: the QEMU that arrived by multifd does not keep it", async () => {
    const prepared = await prepare(source, "dst-d", DEFAULT_TUNING);
    await startOutgoing(source.proc.qmp, prepared.uri, DEFAULT_TUNING, { pauseBeforeSwitchover: true });
    await waitForMigration(source.proc.qmp, { timeoutMs: 60_000, pollMs: 100 });
    const done = await completeAtSource(source);
    expect(done.status).toBe("completed");
    await startAtDestination(prepared.dst);
    await quit(source.proc.qmp);
    await source.proc.exited;
    await expectContinued(source, prepared.dst);
    source = prepared.dst;
  });

  it("refuses multifd combined with post-copy, naming the conflict", () => {
    expect(() =>
      validateTuning({ ...DEFAULT_TUNING, postcopy: true, multifd: { channels: 4, compression: "zstd" } }),
    ).toThrow(/multifd cannot be combined with post-copy/);
  });
});
