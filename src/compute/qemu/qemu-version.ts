/**
 * The agent's QEMU: which binary (`--qemu-binary`, else NOVACRON_QEMU_BINARY, else
 * qemu-system-x86_64 on PATH), its version (`--version`) and its machine types
 * (`-machine help`), probed once at agent start. A QEMU that is missing or older than 7.2
 * stops the agent with NOVA_QEMU_UNSUPPORTED, naming what was found and how to install a
 * supported one. The parsers are pure and tested against both QEMUs' real output.
 */
import { execFile } from "node:child_process";
import { constants } from "node:fs";
import { access } from "node:fs/promises";
import path from "node:path";
import { describeError, NovaError } from "../../lib/errors.js";
import {
  formatQemuVersion,
  isSupportedQemu,
  type QemuVersion,
  qemuUnsupportedError,
  sortQ35Types,
} from "../../lib/qemu-support.js";

/** The binary when neither the flag nor the environment names one. */
export const DEFAULT_QEMU_BINARY = "qemu-system-x86_64";

/** A parsed `--version` line. */
export interface ParsedQemuVersion extends QemuVersion {
  /** The version line as QEMU printed it, e.g. "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)". */
  text: string;
}

/** What `-machine help` says about q35. */
export interface QemuMachines {
  /** Versioned q35 types, newest first (pc-q35-10.0, pc-q35-9.2, …). */
  q35Types: string[];
  /** What the `q35` alias resolves to (pc-q35-10.0 on QEMU 10.0), if QEMU has the alias. */
  q35Alias: string | undefined;
}

/** Everything the agent learns about its QEMU at start (reported to the server). */
export interface QemuProbe extends ParsedQemuVersion {
  /** The binary as run (an absolute path when found on PATH). */
  binary: string;
  /** "10.0.2". */
  version: string;
  /** Versioned q35 types, newest first. */
  machineTypes: string[];
  /** The concrete type `q35` resolves to here. */
  q35Alias: string;
}

/**
 * Parses `qemu-system-x86_64 --version`: "QEMU emulator version 7.2.22 (Debian …)".
 * Undefined when the output has no such line.
 */
export function parseQemuVersion(output: string): ParsedQemuVersion | undefined {
  for (const raw of output.split("\n")) {
    const line = raw.trim();
    const m = /^QEMU emulator version (\d+)\.(\d+)(?:\.(\d+))?/.exec(line);
    if (m) return { major: Number(m[1]), minor: Number(m[2]), micro: Number(m[3] ?? 0), text: line };
  }
  return undefined;
}

/**
 * Parses `qemu-system-x86_64 -machine help`: one machine per line, name then description;
 * an alias says "(alias of pc-q35-10.0)". Keeps the versioned q35 types and the alias.
 */
export function parseMachineHelp(output: string): QemuMachines {
  const types: string[] = [];
  let q35Alias: string | undefined;
  for (const raw of output.split("\n")) {
    const m = /^(\S+)\s+(.*)$/.exec(raw.trim());
    if (!m) continue;
    const [, name, description] = m as unknown as [string, string, string];
    if (/^pc-q35-\d+\.\d+(?:\.\d+)?$/.test(name)) types.push(name);
    if (name === "q35") q35Alias = /\(alias of (pc-q35-[\d.]+)\)/.exec(description)?.[1];
  }
  return { q35Types: sortQ35Types([...new Set(types)]), q35Alias };
}

/** The binary to run: the flag, else NOVACRON_QEMU_BINARY, else qemu-system-x86_64 (PATH). */
export function resolveQemuBinary(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (flag !== undefined && flag.trim() !== "") return flag.trim();
  const fromEnv = env.NOVACRON_QEMU_BINARY?.trim();
  if (fromEnv) return fromEnv;
  return DEFAULT_QEMU_BINARY;
}

/**
 * Where `binary` is: itself (made absolute) when it names a path, else the first
 * executable of that name on `$PATH`; undefined when there is none.
 */
export async function locateBinary(
  binary: string,
  envPath = process.env.PATH ?? "",
): Promise<string | undefined> {
  const executable = (p: string) =>
    access(p, constants.X_OK).then(
      () => true,
      () => false,
    );
  if (binary.includes("/")) {
    const abs = path.resolve(binary);
    return (await executable(abs)) ? abs : undefined;
  }
  for (const dir of envPath.split(":")) {
    if (!dir) continue;
    const candidate = path.join(dir, binary);
    if (await executable(candidate)) return candidate;
  }
  return undefined;
}

/** Bound on one `--version` / `-machine help` run (QEMU prints and exits at once). */
const PROBE_TIMEOUT_MS = 15_000;

function run(binary: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(binary, args, { timeout: PROBE_TIMEOUT_MS, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) {
        const said = `${stderr}`.trim().split("\n").at(-1);
        reject(new Error(`${describeError(err)}${said ? `: ${said}` : ""}`));
      } else {
        resolve(stdout);
      }
    });
  });
}

/**
 * Runs `binary --version` and `binary -machine help` once and checks the result: throws
 * NOVA_QEMU_UNSUPPORTED when the binary is missing or fails, or its QEMU is older than
 * 7.2 or has no q35 machine type.
 */
export async function probeQemu(binary: string = DEFAULT_QEMU_BINARY): Promise<QemuProbe> {
  const located = await locateBinary(binary);
  if (!located) {
    const where = binary.includes("/")
      ? `${path.resolve(binary)} does not exist or is not executable`
      : `no executable ${binary} on PATH (${process.env.PATH ?? ""})`;
    throw qemuUnsupportedError(`QEMU not found: ${where}`, { binary, found: null });
  }
  let versionOut: string;
  try {
    versionOut = await run(located, ["--version"]);
  } catch (err) {
    throw qemuUnsupportedError(
      `QEMU at ${located} does not run (${located} --version: ${describeError(err)})`,
      {
        binary: located,
        found: null,
      },
    );
  }
  const version = parseQemuVersion(versionOut);
  if (!version) {
    const first = versionOut.trim().split("\n")[0] ?? "";
    throw qemuUnsupportedError(
      `${located} is not QEMU: --version printed "${first.slice(0, 200)}" (expected "QEMU emulator version X.Y.Z")`,
      { binary: located, found: first },
    );
  }
  const found = `QEMU ${formatQemuVersion(version)} at ${located} (${version.text})`;
  if (!isSupportedQemu(version)) {
    throw qemuUnsupportedError(`${found} is too old`, {
      binary: located,
      found: formatQemuVersion(version),
    });
  }
  let machines: QemuMachines;
  try {
    machines = parseMachineHelp(await run(located, ["-machine", "help"]));
  } catch (err) {
    throw new NovaError(
      "NOVA_QEMU_UNSUPPORTED",
      `${found}: listing its machine types failed (${located} -machine help: ${describeError(err)})`,
      { details: { binary: located }, cause: err },
    );
  }
  if (!machines.q35Alias || machines.q35Types.length === 0) {
    throw qemuUnsupportedError(`${found} offers no q35 machine type (-machine help lists no pc-q35-X.Y)`, {
      binary: located,
      found: formatQemuVersion(version),
    });
  }
  return {
    ...version,
    binary: located,
    version: formatQemuVersion(version),
    machineTypes: machines.q35Types,
    q35Alias: machines.q35Alias,
  };
}
