/**
 * Machine configuration → QEMU command line. Owns the shape of every VM we start (machine
 * type, CPU model, disk attachment, serial, QMP, pidfile) and the validation that keeps
 * user input from being reinterpreted by QEMU's option parser. Pure: no I/O.
 */
import path from "node:path";
import { NovaError } from "../../lib/errors.js";
import { cpuModelFor, isValidMachineType } from "../../lib/qemu-support.js";

/** Everything needed to start one VM's QEMU process. */
export interface MachineConfig {
  /** The VM's UUID; passed as `-uuid` so /proc/<pid>/cmdline identifies our process. */
  vmId: string;
  /** Human name, shown as the QEMU process/thread name. */
  name: string;
  /** Number of virtual CPUs. */
  vcpus: number;
  /** Guest RAM in MiB. */
  memoryMiB: number;
  /**
   * QEMU machine type: a versioned q35 type (`pc-q35-7.2`), fixed for the VM's life so a
   * migration destination runs the same virtual hardware; `q35` (QEMU's newest) when
   * absent. Only `q35` and `pc-q35-X.Y` are accepted.
   */
  machineType?: string;
  /** Accelerator: "kvm" (with `-cpu host`) or "tcg" (with `-cpu max`). */
  accel: "kvm" | "tcg";
  /** qcow2 overlay attached as virtio-blk-pci; /dev/vda in the guest. */
  diskPath: string;
  /** Kernel for direct kernel boot; firmware boots the disk when absent. */
  kernelPath?: string;
  /** Initrd for direct kernel boot (requires kernelPath). */
  initrdPath?: string;
  /** Kernel command line for direct kernel boot (requires kernelPath). */
  kernelCmdline?: string;
  /** Per-VM directory holding qmp.sock, qemu.pid, serial.log and qemu.log. */
  runDir: string;
  /**
   * Start as the destination of a live migration: `-incoming defer` makes QEMU wait, with
   * the same devices as the source, for `migrate-incoming` (see migration.ts) instead of
   * booting. Everything else must equal the source's config.
   */
  incoming?: "defer";
}

/** The files QEMU creates or writes inside a VM's run directory. */
export interface VmRunPaths {
  qmpSocket: string;
  pidfile: string;
  serialLog: string;
  qemuLog: string;
}

/** Where a VM's QMP socket, pidfile, serial log and QEMU stderr log live. */
export function vmRunPaths(runDir: string): VmRunPaths {
  return {
    qmpSocket: path.join(runDir, "qmp.sock"),
    pidfile: path.join(runDir, "qemu.pid"),
    serialLog: path.join(runDir, "serial.log"),
    qemuLog: path.join(runDir, "qemu.log"),
  };
}

/** q35 supports at most 288 vCPUs in QEMU 7.2. */
const MAX_VCPUS = 288;
/** 16 TiB: far above any host we run on; catches unit mix-ups (bytes passed as MiB). */
const MAX_MEMORY_MIB = 16 * 1024 * 1024;
/** sun_path is 108 bytes including the terminating NUL. */
const MAX_UNIX_SOCKET_PATH_BYTES = 107;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
const CONTROL_CHARS_RE = /[\u0000-\u001f\u007f]/;

function invalid(message: string, field: string, value: unknown): NovaError {
  return new NovaError("NOVA_UNPROCESSABLE", `Invalid machine config: ${message}`, {
    details: { field, value },
  });
}

/**
 * Escapes a value embedded in a QEMU option string (`key=value,key=value`): QEMU reads
 * `,,` as a literal comma, so doubling commas keeps a path from injecting options.
 */
export function escapeQemuOptValue(value: string): string {
  return value.replaceAll(",", ",,");
}

function checkPositiveInt(field: string, value: number, max: number): void {
  if (!Number.isSafeInteger(value) || value < 1 || value > max) {
    throw invalid(`${field} must be an integer between 1 and ${max}, got ${value}`, field, value);
  }
}

function checkAbsolutePath(field: string, value: string | undefined): void {
  if (typeof value !== "string" || value.length === 0) {
    throw invalid(`${field} must be a non-empty absolute path`, field, value);
  }
  if (!path.isAbsolute(value)) {
    throw invalid(`${field} must be an absolute path, got "${value}"`, field, value);
  }
  // QEMU cannot take a NUL in argv and newlines make logs and pidfile handling ambiguous.
  if (CONTROL_CHARS_RE.test(value)) {
    throw invalid(`${field} must not contain control characters`, field, value);
  }
}

/** Throws NOVA_UNPROCESSABLE naming the first invalid field of `cfg`. */
export function validateMachineConfig(cfg: MachineConfig): void {
  if (typeof cfg.vmId !== "string" || !UUID_RE.test(cfg.vmId)) {
    throw invalid(`vmId must be a UUID, got "${cfg.vmId}"`, "vmId", cfg.vmId);
  }
  if (typeof cfg.name !== "string" || cfg.name.length === 0 || cfg.name.length > 64) {
    throw invalid("name must be 1 to 64 characters", "name", cfg.name);
  }
  if (CONTROL_CHARS_RE.test(cfg.name)) {
    throw invalid("name must not contain control characters", "name", cfg.name);
  }
  // `-name <name>,debug-threads=on`: an '=' would turn the name into a key=value pair.
  if (cfg.name.includes("=")) {
    throw invalid(`name must not contain '=', got "${cfg.name}"`, "name", cfg.name);
  }
  // `-machine <type>` takes options after a comma (`q35,accel=kvm`): only plain type names.
  if (cfg.machineType !== undefined && !isValidMachineType(cfg.machineType)) {
    throw invalid(
      `machineType must be q35 or pc-q35-X.Y, got "${String(cfg.machineType)}"`,
      "machineType",
      cfg.machineType,
    );
  }
  checkPositiveInt("vcpus", cfg.vcpus, MAX_VCPUS);
  checkPositiveInt("memoryMiB", cfg.memoryMiB, MAX_MEMORY_MIB);
  if (cfg.accel !== "kvm" && cfg.accel !== "tcg") {
    throw invalid(`accel must be "kvm" or "tcg", got "${String(cfg.accel)}"`, "accel", cfg.accel);
  }
  checkAbsolutePath("diskPath", cfg.diskPath);
  checkAbsolutePath("runDir", cfg.runDir);
  if (cfg.kernelPath !== undefined) checkAbsolutePath("kernelPath", cfg.kernelPath);
  if (cfg.initrdPath !== undefined) {
    if (cfg.kernelPath === undefined) {
      throw invalid("initrdPath needs kernelPath (direct kernel boot)", "initrdPath", cfg.initrdPath);
    }
    checkAbsolutePath("initrdPath", cfg.initrdPath);
  }
  if (cfg.kernelCmdline !== undefined) {
    if (cfg.kernelPath === undefined) {
      throw invalid(
        "kernelCmdline needs kernelPath (direct kernel boot)",
        "kernelCmdline",
        cfg.kernelCmdline,
      );
    }
    if (cfg.kernelCmdline.includes("\u0000")) {
      throw invalid("kernelCmdline must not contain NUL", "kernelCmdline", cfg.kernelCmdline);
    }
  }
  if (cfg.incoming !== undefined && cfg.incoming !== "defer") {
    throw invalid(
      `incoming must be "defer" when set, got "${String(cfg.incoming)}"`,
      "incoming",
      cfg.incoming,
    );
  }
  const socketPath = vmRunPaths(cfg.runDir).qmpSocket;
  if (Buffer.byteLength(socketPath) > MAX_UNIX_SOCKET_PATH_BYTES) {
    throw invalid(
      `runDir is too long: the QMP socket path "${socketPath}" exceeds ${MAX_UNIX_SOCKET_PATH_BYTES} bytes`,
      "runDir",
      cfg.runDir,
    );
  }
}

/**
 * The QEMU argv (without the binary) for `cfg`. Paths inside option strings are escaped
 * with QEMU's `,,` rule; plain-path options (-pidfile, -kernel, -initrd) take them verbatim.
 */
export function buildQemuArgv(cfg: MachineConfig): string[] {
  validateMachineConfig(cfg);
  const paths = vmRunPaths(cfg.runDir);
  const esc = escapeQemuOptValue;
  const argv: string[] = [
    "-name",
    `${esc(cfg.name)},debug-threads=on`,
    "-uuid",
    cfg.vmId,
    "-machine",
    cfg.machineType ?? "q35",
    "-accel",
    cfg.accel,
    "-cpu",
    cpuModelFor(cfg.accel),
    "-smp",
    String(cfg.vcpus),
    "-m",
    `size=${cfg.memoryMiB}M`,
    // Only the devices we ask for; no host-wide config files changing what we start.
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    // Timestamps in qemu.log make failure reports line up with agent logs.
    "-msg",
    "timestamp=on",
    "-chardev",
    `file,id=serial0,path=${esc(paths.serialLog)},append=on`,
    "-serial",
    "chardev:serial0",
    // The chardev + mon form (equivalent to -qmp unix:…,server=on,wait=off) lets the
    // socket path be escaped like every other option value.
    "-chardev",
    `socket,id=qmp,path=${esc(paths.qmpSocket)},server=on,wait=off`,
    "-mon",
    "chardev=qmp,mode=control",
    "-pidfile",
    paths.pidfile,
    "-drive",
    `file=${esc(cfg.diskPath)},format=qcow2,if=none,id=drive-vda,cache=none,aio=threads,discard=unmap`,
    "-device",
    "virtio-blk-pci,drive=drive-vda,id=vda,bootindex=1",
  ];
  if (cfg.kernelPath !== undefined) {
    argv.push("-kernel", cfg.kernelPath);
    if (cfg.initrdPath !== undefined) argv.push("-initrd", cfg.initrdPath);
    if (cfg.kernelCmdline !== undefined) argv.push("-append", cfg.kernelCmdline);
  }
  // The listening address is chosen later over QMP (migrate-incoming), once it is known.
  if (cfg.incoming === "defer") argv.push("-incoming", "defer");
  return argv;
}
