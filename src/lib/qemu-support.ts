/**
 * Which QEMU versions NovaCron runs on and which machine type a VM can run on which QEMU.
 * Pure and shared: the agent checks its own QEMU at start and before launching a VM, the
 * server checks registrations, placement and migrations with the same rules.
 *
 * A VM's machine type is its virtual hardware's version: a guest started as pc-q35-10.0
 * can only be resumed (after a live migration) by a QEMU that offers pc-q35-10.0. QEMU's
 * `q35` is an alias for its newest versioned type, so it means different hardware on
 * different QEMU versions; NovaCron stores a concrete type per VM instead.
 */
import { NovaError } from "./errors.js";

/** The oldest QEMU NovaCron supports (Debian 12's). */
export const MIN_QEMU = { major: 7, minor: 2 } as const;

/** A QEMU version (from `--version`). */
export interface QemuVersion {
  major: number;
  minor: number;
  micro: number;
}

/** What placement and migration need to know about a host's QEMU. */
export interface QemuMachineFacts extends QemuVersion {
  /** The versioned q35 machine types it offers (`pc-q35-7.2`, …). */
  machineTypes: readonly string[];
  /** The concrete type its `q35` alias resolves to. */
  q35Alias: string;
}

/** The `-cpu` model an agent starts VMs with under each accelerator. */
export type CpuModel = "host" | "max";

/**
 * `host` passes the real CPU through under KVM; `max` is the richest model TCG emulates.
 * Agents start every VM (and every incoming migration) with their own accelerator's, so a
 * live move keeps its CPU only between hosts of the same accelerator.
 */
export function cpuModelFor(accel: "kvm" | "tcg"): CpuModel {
  return accel === "kvm" ? "host" : "max";
}

/** A machine type a VM may be pinned to: a versioned q35 type, or `q35` (the host's newest). */
export const MACHINE_TYPE_PATTERN = "^(q35|pc-q35-[0-9]{1,3}\\.[0-9]{1,3})$";
const MACHINE_TYPE_RE = new RegExp(MACHINE_TYPE_PATTERN);
const VERSIONED_Q35_RE = /^pc-q35-(\d{1,3})\.(\d{1,3})(?:\.(\d{1,3}))?$/;

/** How to get a supported QEMU; the tail of every "QEMU missing or too old" message. */
export const QEMU_INSTALL_HINT =
  "Install a supported QEMU: on Debian 13, apt install qemu-system-x86 (QEMU 10.0); on Debian 12, " +
  'QEMU 10.0 from bookworm-backports (docs/operations.md, "Supported QEMU versions") or the stock ' +
  "qemu-system-x86 (7.2); or point the agent at another binary with --qemu-binary PATH (or NOVACRON_QEMU_BINARY).";

/** "10.0.2". */
export function formatQemuVersion(v: QemuVersion): string {
  return `${v.major}.${v.minor}.${v.micro}`;
}

/** Negative, zero or positive as `a` is older than, equal to or newer than `b` (major.minor only). */
export function compareMajorMinor(
  a: { major: number; minor: number },
  b: { major: number; minor: number },
): number {
  return a.major !== b.major ? a.major - b.major : a.minor - b.minor;
}

/** True when NovaCron supports this QEMU version (7.2 or newer). */
export function isSupportedQemu(v: { major: number; minor: number }): boolean {
  return compareMajorMinor(v, MIN_QEMU) >= 0;
}

/** The version a versioned q35 type stands for (`pc-q35-7.2` → 7.2), or undefined. */
export function q35TypeVersion(machineType: string): { major: number; minor: number } | undefined {
  const m = VERSIONED_Q35_RE.exec(machineType);
  return m ? { major: Number(m[1]), minor: Number(m[2]) } : undefined;
}

/** Versioned q35 types newest first (`pc-q35-10.0` before `pc-q35-9.2` before `pc-q35-4.0.1`). */
export function sortQ35Types(types: readonly string[]): string[] {
  const key = (t: string): number[] => {
    const m = VERSIONED_Q35_RE.exec(t);
    return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? -1)] : [-1, -1, -1];
  };
  return [...types].sort((a, b) => {
    const [ka, kb] = [key(a), key(b)];
    for (let i = 0; i < 3; i++) if (ka[i] !== kb[i]) return kb[i]! - ka[i]!;
    return 0;
  });
}

/** True when `value` is a machine type a VM may be pinned to (`q35` or `pc-q35-X.Y`). */
export function isValidMachineType(value: string): boolean {
  return MACHINE_TYPE_RE.test(value);
}

/**
 * Throws NOVA_BAD_REQUEST unless `value` is `q35` or `pc-q35-X.Y`: anything else (other
 * machine families, option strings such as `q35,accel=kvm`) never reaches QEMU's argv.
 */
export function validateMachineType(value: string, field = "machineType"): void {
  if (typeof value === "string" && isValidMachineType(value)) return;
  throw new NovaError(
    "NOVA_BAD_REQUEST",
    `Invalid machine type "${String(value)}": use a versioned q35 type such as pc-q35-7.2 or pc-q35-10.0, or q35 for the newest the host's QEMU offers.`,
    { details: { field, value } },
  );
}

/**
 * The outcome of machineTypeSupport: the concrete type QEMU runs (`q35` resolved), or why
 * not, as a clause ("QEMU 7.2.22 has no machine type pc-q35-10.0 (…)").
 */
export type MachineTypeSupport = { ok: true; resolved: string } | { ok: false; reason: string };

/**
 * Can machine type `machineType` run on `qemu` (its version and the q35 types it lists)?
 * `q35` runs anywhere and resolves to the host's alias. A versioned type runs when the
 * host lists it; with no list (not reported) the version decides (pc-q35-X.Y needs QEMU
 * X.Y or newer). Pure.
 */
export function machineTypeSupport(machineType: string, qemu: QemuMachineFacts): MachineTypeSupport {
  const version = formatQemuVersion(qemu);
  if (machineType === "q35") return { ok: true, resolved: qemu.q35Alias };
  const wanted = q35TypeVersion(machineType);
  if (!wanted) return { ok: false, reason: `${machineType} is not a q35 machine type` };
  if (qemu.machineTypes.length > 0) {
    if (qemu.machineTypes.includes(machineType)) return { ok: true, resolved: machineType };
    const newest = sortQ35Types(qemu.machineTypes)[0];
    const tooNew = compareMajorMinor(wanted, qemu) > 0;
    return {
      ok: false,
      reason: tooNew
        ? `QEMU ${version} has no machine type ${machineType} (its newest is ${newest}; ${machineType} needs QEMU ${wanted.major}.${wanted.minor} or newer)`
        : `QEMU ${version} no longer offers machine type ${machineType}`,
    };
  }
  if (compareMajorMinor(wanted, qemu) <= 0) return { ok: true, resolved: machineType };
  return {
    ok: false,
    reason: `QEMU ${version} has no machine type ${machineType} (it needs QEMU ${wanted.major}.${wanted.minor} or newer)`,
  };
}

/**
 * The error for a QEMU that is missing or older than MIN_QEMU, naming what was found
 * (`found`: e.g. "QEMU 6.2.0 at /usr/bin/qemu-system-x86_64") and how to install a
 * supported one.
 */
export function qemuUnsupportedError(found: string, details: Record<string, unknown> = {}): NovaError {
  return new NovaError(
    "NOVA_QEMU_UNSUPPORTED",
    `${found}; NovaCron needs QEMU ${MIN_QEMU.major}.${MIN_QEMU.minor} or newer (10.0 recommended). ${QEMU_INSTALL_HINT}`,
    { details: { minimum: `${MIN_QEMU.major}.${MIN_QEMU.minor}`, ...details } },
  );
}
