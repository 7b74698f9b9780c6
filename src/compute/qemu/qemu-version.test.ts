// The QEMU probe: parsers against the real output of QEMU 10.0.2 and 7.2.22 (captured on
// this machine into testdata/), binary resolution, and the probe itself against the real
// binaries (only `--version` and `-machine help`) and stand-ins for a missing, a too old
// and a non-QEMU binary.
import { existsSync } from "node:fs";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { QemuInfo } from "../../api/types/agent.js";
import { isNovaError } from "../../lib/errors.js";
import { QEMU_7_2_22, QEMU_10_0_2 } from "../../lib/qemu-info.test-util.js";
import {
  DEFAULT_QEMU_BINARY,
  locateBinary,
  parseMachineHelp,
  parseQemuVersion,
  probeQemu,
  resolveQemuBinary,
} from "./qemu-version.js";

const fixture = (name: string) => readFile(new URL(`./testdata/${name}`, import.meta.url), "utf8");
const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../../..");
const QEMU72 = path.join(ROOT, ".cache", "qemu-7.2", "qemu-system-x86_64");
/** What parseQemuVersion reads of a QEMU's `--version`. */
const versionOf = ({ major, minor, micro, text }: QemuInfo) => ({ major, minor, micro, text });

describe("parseQemuVersion", () => {
  it("reads QEMU 10.0.2 from Debian 12's bookworm-backports", async () => {
    expect(parseQemuVersion(await fixture("qemu-10.0.2-version.txt"))).toEqual(versionOf(QEMU_10_0_2));
  });

  it("reads QEMU 7.2.22 from Debian 12", async () => {
    expect(parseQemuVersion(await fixture("qemu-7.2.22-version.txt"))).toEqual(versionOf(QEMU_7_2_22));
  });

  it("takes a version without a micro part or a package suffix, and rejects other output", () => {
    expect(parseQemuVersion("QEMU emulator version 8.1\n")).toMatchObject({ major: 8, minor: 1, micro: 0 });
    expect(parseQemuVersion("QEMU emulator version 9.2.0\nCopyright")).toMatchObject({ micro: 0 });
    expect(parseQemuVersion("")).toBeUndefined();
    expect(parseQemuVersion("qemu-img version 10.0.2")).toBeUndefined();
    expect(parseQemuVersion("Usage: true")).toBeUndefined();
  });
});

describe("parseMachineHelp", () => {
  it("lists QEMU 10.0's versioned q35 types newest first and resolves its q35 alias", async () => {
    const m = parseMachineHelp(await fixture("qemu-10.0.2-machine-help.txt"));
    expect(m.q35Alias).toBe("pc-q35-10.0");
    expect(m.q35Types[0]).toBe("pc-q35-10.0");
    expect(m.q35Types.slice(0, 8)).toEqual(QEMU_10_0_2.machineTypes.slice(0, 8));
    expect(m.q35Types.at(-1)).toBe("pc-q35-2.4");
    expect(m.q35Types).toContain("pc-q35-4.0.1");
    expect(m.q35Types).toContain("pc-q35-2.12");
    expect(m.q35Types).toHaveLength(31);
    // i440fx types, the q35 alias itself and other machines are not q35 types.
    expect(m.q35Types.some((t) => !t.startsWith("pc-q35-"))).toBe(false);
  });

  it("lists QEMU 7.2's, whose q35 means pc-q35-7.2", async () => {
    const m = parseMachineHelp(await fixture("qemu-7.2.22-machine-help.txt"));
    expect(m.q35Alias).toBe("pc-q35-7.2");
    expect(m.q35Types[0]).toBe("pc-q35-7.2");
    expect(m.q35Types).not.toContain("pc-q35-8.0");
    expect(m.q35Types).toContain("pc-q35-2.4");
    expect(m.q35Types).toHaveLength(24);
  });

  it("finds nothing in output without q35", () => {
    expect(parseMachineHelp("Supported machines are:\nmicrovm              microvm (i386)\n")).toEqual({
      q35Types: [],
      q35Alias: undefined,
    });
  });
});

describe("resolveQemuBinary", () => {
  it("prefers the flag, then NOVACRON_QEMU_BINARY, then qemu-system-x86_64", () => {
    const env = { NOVACRON_QEMU_BINARY: "/opt/qemu/bin/qemu-system-x86_64" };
    expect(resolveQemuBinary("/flag/qemu", env)).toBe("/flag/qemu");
    expect(resolveQemuBinary(undefined, env)).toBe("/opt/qemu/bin/qemu-system-x86_64");
    expect(resolveQemuBinary(undefined, {})).toBe(DEFAULT_QEMU_BINARY);
    expect(resolveQemuBinary(undefined, { NOVACRON_QEMU_BINARY: "  " })).toBe(DEFAULT_QEMU_BINARY);
  });
});

describe("probeQemu", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "nc-qemu-version-"));
    const script = async (name: string, body: string) => {
      await writeFile(path.join(dir, name), `#!/bin/sh\n${body}\n`);
      await chmod(path.join(dir, name), 0o755);
    };
    await script(
      "qemu-6.2",
      'case "$1" in --version) echo "QEMU emulator version 6.2.0 (Debian 1:6.2+dfsg-2ubuntu6)";; *) exit 1;; esac',
    );
    await script("not-qemu", "echo hello");
    await script(
      "no-q35",
      'case "$1" in --version) echo "QEMU emulator version 9.0.0";; *) echo "none  x";; esac',
    );
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("probes the system QEMU 10 on PATH", async () => {
    const q = await probeQemu();
    expect(q.major).toBeGreaterThanOrEqual(7);
    expect(path.isAbsolute(q.binary)).toBe(true);
    expect(q.version).toBe(`${q.major}.${q.minor}.${q.micro}`);
    expect(q.q35Alias).toBe(q.machineTypes[0]);
    expect(q.machineTypes).toContain("pc-q35-7.2");
    expect(await locateBinary("qemu-system-x86_64")).toBe(q.binary);
  });

  it.runIf(existsSync(QEMU72))("probes QEMU 7.2 given by path (the wrapper in .cache/qemu-7.2)", async () => {
    const q = await probeQemu(QEMU72);
    expect(q).toMatchObject({
      major: 7,
      minor: 2,
      version: "7.2.22",
      q35Alias: "pc-q35-7.2",
      binary: QEMU72,
    });
    expect(q.machineTypes).not.toContain("pc-q35-10.0");
  });

  it("refuses a missing binary, naming the path tried and how to install QEMU", async () => {
    const err = await probeQemu("/nonexistent/qemu-system-x86_64").catch((e: unknown) => e);
    if (!isNovaError(err, "NOVA_QEMU_UNSUPPORTED")) throw err;
    expect(err.message).toMatch(
      /^QEMU not found: \/nonexistent\/qemu-system-x86_64 does not exist or is not executable; NovaCron needs QEMU 7\.2 or newer/,
    );
    expect(err.message).toContain("bookworm-backports");
    const onPath = await probeQemu("qemu-system-nonexistent").catch((e: unknown) => e);
    expect(isNovaError(onPath, "NOVA_QEMU_UNSUPPORTED")).toBe(true);
    expect((onPath as Error).message).toMatch(/no executable qemu-system-nonexistent on PATH/);
  });

  it("refuses a QEMU older than 7.2, naming the version found", async () => {
    const err = await probeQemu(path.join(dir, "qemu-6.2")).catch((e: unknown) => e);
    if (!isNovaError(err, "NOVA_QEMU_UNSUPPORTED")) throw err;
    expect(err.message).toContain(
      `QEMU 6.2.0 at ${path.join(dir, "qemu-6.2")} (QEMU emulator version 6.2.0 (Debian 1:6.2+dfsg-2ubuntu6)) is too old; NovaCron needs QEMU 7.2 or newer`,
    );
    expect(err.details).toMatchObject({ found: "6.2.0" });
  });

  it("refuses a binary that is not QEMU, or a QEMU without q35", async () => {
    await expect(probeQemu(path.join(dir, "not-qemu"))).rejects.toThrow(
      /is not QEMU: --version printed "hello"/,
    );
    await expect(probeQemu(path.join(dir, "no-q35"))).rejects.toThrow(/offers no q35 machine type/);
  });
});
