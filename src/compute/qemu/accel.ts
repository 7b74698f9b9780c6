/**
 * Chooses the accelerator for a host: KVM when it really works, else TCG. /dev/kvm existing
 * is not enough (nested or broken KVM can hang or crash guests), so in "auto" mode we boot a
 * tiny real guest under KVM — a hand-assembled boot sector that writes a marker to the
 * debugcon port and halts — with the same machine type and CPU model our VMs use, and only
 * trust KVM if the marker appears in time. NOVACRON_ACCEL=kvm|tcg|auto overrides.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { constants } from "node:fs";
import { mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { NovaError } from "../../lib/errors.js";
import { cpuModelFor } from "../../lib/qemu-support.js";
import { waitFor } from "../../lib/wait.js";
import { logTailLines } from "./exit-reason.js";

/** An accelerator choice; "auto" probes. */
export type AccelForce = "kvm" | "tcg" | "auto";

/** The chosen accelerator and a sentence saying why. */
export interface AccelDecision {
  accel: "kvm" | "tcg";
  reason: string;
  /** The KVM probe guest's result, when one was booted (for logs and diagnostics). */
  probe?: ProbeGuestResult;
}

/** Options for probeAccelerator. */
export interface ProbeOptions {
  /** @defaultValue "qemu-system-x86_64" */
  qemuBinary?: string;
  /** How long the KVM test guest gets to print its marker. @defaultValue 3000 */
  timeoutMs?: number;
  /** Skip probing. @defaultValue NOVACRON_ACCEL from the environment, else "auto" */
  force?: AccelForce;
  /** The KVM device to check. @defaultValue "/dev/kvm" */
  kvmDevice?: string;
}

/** Whether the KVM device can be used at all. */
export type KvmDeviceState = { state: "ok" } | { state: "missing" } | { state: "unusable"; error: string };

/** What happened to a probe guest. */
export interface ProbeGuestResult {
  /** True when the boot sector's marker reached the debugcon port. */
  markerSeen: boolean;
  /** Time from spawn to marker (or to giving up / QEMU exiting). */
  elapsedMs: number;
  /** Set when QEMU ended by itself before the marker (e.g. KVM refused the CPU model). */
  exited?: { code: number | null; signal: string | null };
  /** QEMU's last stderr lines. */
  logTail: string[];
}

/** The facts decideAccelerator works from. */
export interface AccelFacts {
  force: AccelForce;
  /** Where `force` came from, for the reason text. */
  forceSource: "option" | "NOVACRON_ACCEL" | "default";
  kvmDevicePath: string;
  kvmDevice: KvmDeviceState;
  /** The KVM probe guest's result; required when force is "auto" and the device is ok. */
  probe?: ProbeGuestResult;
  /** The same guest under TCG, the yardstick for the KVM probe's speed. */
  tcgProbe?: ProbeGuestResult;
  timeoutMs: number;
}

/** The string the probe boot sector writes to port 0xe9. */
export const PROBE_MARKER = "NOVACRON-PROBE-OK";

/**
 * A 512-byte MBR boot sector: for each marker byte `mov al, imm8; out 0xe9, al`, then
 * `cli; hlt; jmp $-1` so the vCPU stays halted, then the 0x55AA boot signature.
 */
export function probeBootSector(): Buffer {
  const sector = Buffer.alloc(512);
  let at = 0;
  for (const byte of Buffer.from(`${PROBE_MARKER}\n`, "ascii")) {
    sector.set([0xb0, byte, 0xe6, 0xe9], at); // mov al, byte; out 0xe9, al
    at += 4;
  }
  sector.set([0xfa, 0xf4, 0xeb, 0xfd], at); // cli; hlt; jmp short back to hlt
  sector[510] = 0x55;
  sector[511] = 0xaa;
  return sector;
}

/** Reads NOVACRON_ACCEL; throws NOVA_CONFIG for a value other than kvm, tcg or auto. */
export function accelForceFromEnv(env: NodeJS.ProcessEnv = process.env): AccelForce | undefined {
  const raw = env.NOVACRON_ACCEL?.trim();
  if (raw === undefined || raw === "") return undefined;
  if (raw === "kvm" || raw === "tcg" || raw === "auto") return raw;
  throw new NovaError("NOVA_CONFIG", `NOVACRON_ACCEL must be kvm, tcg or auto, got "${raw}"`, {
    details: { NOVACRON_ACCEL: raw },
  });
}

/** True when the facts call for booting the KVM probe guest. */
export function needsKvmProbe(force: AccelForce, device: KvmDeviceState): boolean {
  return force === "auto" && device.state === "ok";
}

function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(1))} s`;
}

/** Decides the accelerator from the facts. Pure; throws NOVA_CONFIG when KVM is forced but unusable. */
export function decideAccelerator(f: AccelFacts): AccelDecision {
  const dev = f.kvmDevicePath;
  const source = f.forceSource === "option" ? "by configuration" : `by ${f.forceSource}=${f.force}`;
  if (f.force === "tcg") return { accel: "tcg", reason: `TCG forced ${source}` };
  if (f.force === "kvm") {
    if (f.kvmDevice.state !== "ok") {
      const why =
        f.kvmDevice.state === "missing" ? "does not exist" : `cannot be opened (${f.kvmDevice.error})`;
      throw new NovaError("NOVA_CONFIG", `KVM forced ${source} but ${dev} ${why}`, {
        details: { kvmDevice: dev },
      });
    }
    return { accel: "kvm", reason: `KVM forced ${source}` };
  }
  if (f.kvmDevice.state === "missing") return { accel: "tcg", reason: `${dev} does not exist` };
  if (f.kvmDevice.state === "unusable") {
    return { accel: "tcg", reason: `${dev} exists but cannot be opened (${f.kvmDevice.error})` };
  }
  const probe = f.probe;
  if (!probe) throw new NovaError("NOVA_INTERNAL", "decideAccelerator: KVM probe result missing");
  const tcg = f.tcgProbe;
  // Seen on nested hosts: the boot sector reaches its marker under KVM, but ten times
  // slower than under emulation, and real Linux guests then hang during boot. Hardware
  // virtualization that loses to TCG on a boot sector is not working.
  if (probe.markerSeen && tcg?.markerSeen && probe.elapsedMs > 2 * tcg.elapsedMs + 250) {
    return {
      accel: "tcg",
      reason: `${dev} present but a KVM test guest took ${probe.elapsedMs} ms, against ${tcg.elapsedMs} ms under TCG (KVM is emulated or broken here; Linux guests hang)`,
      probe,
    };
  }
  if (probe.markerSeen) {
    return { accel: "kvm", reason: `a KVM test guest booted in ${probe.elapsedMs} ms`, probe };
  }
  if (probe.exited) {
    const how = probe.exited.signal
      ? `QEMU was killed by ${probe.exited.signal}`
      : `QEMU exited with code ${probe.exited.code}`;
    const last = probe.logTail.at(-1);
    return {
      accel: "tcg",
      reason: `${dev} present but a KVM test guest failed: ${how}${last ? `: ${last}` : ""}`,
      probe,
    };
  }
  return {
    accel: "tcg",
    reason: `${dev} present but a test guest made no progress in ${seconds(f.timeoutMs)}`,
    probe,
  };
}

/** Opens the KVM device read-write and closes it again. */
export async function checkKvmDevice(devicePath = "/dev/kvm"): Promise<KvmDeviceState> {
  try {
    const handle = await open(devicePath, constants.O_RDWR);
    await handle.close();
    return { state: "ok" };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === "ENOENT") return { state: "missing" };
    return { state: "unusable", error: e.code ?? e.message };
  }
}

/** Bytes of stderr kept from the probe QEMU; its useful message is a line or two. */
const MAX_STDERR_BYTES = 64 * 1024;

/**
 * Boots the probe boot sector under `accel` (q35, the CPU model our VMs use, 16 MiB) and
 * waits up to `timeoutMs` for its marker. Always kills QEMU and removes its temp dir.
 */
export async function runProbeGuest(opts: {
  accel: "kvm" | "tcg";
  qemuBinary?: string;
  timeoutMs: number;
}): Promise<ProbeGuestResult> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "nc-qemu-probe-"));
  let child: ChildProcess | undefined;
  let exited: { code: number | null; signal: string | null } | undefined;
  let stderr = "";
  const started = Date.now();
  try {
    const disk = path.join(dir, "boot.img");
    const marker = path.join(dir, "debugcon.log");
    // SeaBIOS cannot read a disk of a single sector over virtio-blk; 1 MiB (sparse) works.
    const image = Buffer.alloc(1024 * 1024);
    probeBootSector().copy(image);
    await writeFile(disk, image);
    const argv = [
      ...["-machine", "q35", "-accel", opts.accel, "-cpu", cpuModelFor(opts.accel), "-m", "16"],
      ...["-nodefaults", "-no-user-config", "-display", "none"],
      ...["-drive", `file=${disk.replaceAll(",", ",,")},format=raw,if=none,id=d0,readonly=on`],
      ...["-device", "virtio-blk-pci,drive=d0,bootindex=1"],
      ...["-chardev", `file,id=probe,path=${marker.replaceAll(",", ",,")}`],
      ...["-device", "isa-debugcon,iobase=0xe9,chardev=probe"],
    ];
    const proc = spawn(opts.qemuBinary ?? "qemu-system-x86_64", argv, {
      stdio: ["ignore", "ignore", "pipe"],
    });
    child = proc;
    proc.stderr?.setEncoding("utf8");
    proc.stderr?.on("data", (text: string) => {
      if (stderr.length < MAX_STDERR_BYTES) stderr += text;
    });
    const gone = new Promise<void>((resolve) => {
      proc.once("exit", (code, signal) => {
        exited = { code, signal };
        resolve();
      });
      proc.once("error", (err) => {
        stderr += `${err.message}\n`;
        exited = { code: null, signal: null };
        resolve();
      });
    });
    const stopWaiting = new AbortController();
    void gone.then(() => stopWaiting.abort());
    const markerSeen = await waitFor(
      async () => (await readFile(marker, "utf8").catch(() => "")).includes(PROBE_MARKER),
      { timeoutMs: opts.timeoutMs, intervalMs: 25, signal: stopWaiting.signal, what: "the probe marker" },
    ).catch(async () => {
      // QEMU may have written the marker and then died; look once more.
      return (await readFile(marker, "utf8").catch(() => "")).includes(PROBE_MARKER);
    });
    const elapsedMs = Date.now() - started;
    const result: ProbeGuestResult = { markerSeen, elapsedMs, logTail: [] };
    if (!markerSeen && exited) result.exited = exited;
    if (exited === undefined) {
      proc.kill("SIGKILL");
      await Promise.race([gone, delay(10_000)]);
    }
    // Read stderr after exit so the last lines are complete.
    result.logTail = logTailLines(stderr, 5);
    return result;
  } finally {
    if (child && exited === undefined) child.kill("SIGKILL");
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * "KVM when it works, else TCG". Never throws for a broken KVM (that is what TCG is for);
 * throws NOVA_CONFIG only for an invalid NOVACRON_ACCEL or KVM forced on a host without it.
 */
export async function probeAccelerator(opts: ProbeOptions = {}): Promise<AccelDecision> {
  const envForce = accelForceFromEnv();
  const force = opts.force ?? envForce ?? "auto";
  const forceSource =
    opts.force !== undefined ? "option" : envForce !== undefined ? "NOVACRON_ACCEL" : "default";
  const timeoutMs = opts.timeoutMs ?? 3_000;
  const kvmDevicePath = opts.kvmDevice ?? "/dev/kvm";
  const kvmDevice = force === "tcg" ? ({ state: "missing" } as const) : await checkKvmDevice(kvmDevicePath);
  const facts: AccelFacts = { force, forceSource, kvmDevicePath, kvmDevice, timeoutMs };
  if (needsKvmProbe(force, kvmDevice)) {
    const probeOpts = { accel: "kvm" as const, timeoutMs };
    facts.probe = await runProbeGuest(
      opts.qemuBinary ? { ...probeOpts, qemuBinary: opts.qemuBinary } : probeOpts,
    );
    if (facts.probe.markerSeen) {
      const tcgOpts = { accel: "tcg" as const, timeoutMs };
      facts.tcgProbe = await runProbeGuest(
        opts.qemuBinary ? { ...tcgOpts, qemuBinary: opts.qemuBinary } : tcgOpts,
      );
    }
  }
  return decideAccelerator(facts);
}
