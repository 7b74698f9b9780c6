/**
 * The guest image (images/build.sh): cached and reproducible builds, and the guest's
 * behaviour booted with plain qemu-system-x86_64 under TCG (no NovaCron driver):
 * NC-READY and heartbeats, the memory dirtier, the memory/disk pattern verifier across
 * reboots (including a corrupted disk), and graceful shutdown through QMP
 * system_powerdown. Line formats are specified in images/README.md.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, symlink } from "node:fs/promises";
import { connect } from "node:net";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitFor } from "../src/lib/wait.js";

const execFileP = promisify(execFile);
const repoRoot = path.resolve(import.meta.dirname, "..");
const buildScript = path.join(repoRoot, "images", "build.sh");

interface Manifest {
  name: string;
  inputsHash: string;
  kernel: string;
  kernelFormat?: string;
  initrd: string;
  disk: string;
  diskFormat: string;
  cmdline: string;
  minMemoryMiB: number;
}

interface Image {
  manifestPath: string;
  dir: string;
  manifest: Manifest;
  kernel: string;
  initrd: string;
  disk: string;
}

interface BuildResult {
  image: Image;
  stderr: string;
  ms: number;
}

async function build(args: string[] = []): Promise<BuildResult> {
  const t0 = Date.now();
  const { stdout, stderr } = await execFileP(buildScript, args, { timeout: 240_000, maxBuffer: 8 << 20 });
  const ms = Date.now() - t0;
  const lines = stdout.trim().split("\n");
  const manifestPath = lines[lines.length - 1]!;
  expect(path.isAbsolute(manifestPath)).toBe(true);
  const manifest = JSON.parse(await readFile(manifestPath, "utf8")) as Manifest;
  const dir = path.dirname(manifestPath);
  return {
    image: {
      manifestPath,
      dir,
      manifest,
      kernel: path.join(dir, manifest.kernel),
      initrd: path.join(dir, manifest.initrd),
      disk: path.join(dir, manifest.disk),
    },
    stderr,
    ms,
  };
}

async function sha256(file: string): Promise<string> {
  return createHash("sha256")
    .update(await readFile(file))
    .digest("hex");
}

// ------------------------------------------------------------------ the disk pattern ---
// Mirror of images/guest/workload.c (documented in images/README.md): byte k of a pattern
// stream is byte k%8 of the little-endian splitmix64 word mix64(base + (k/8 + 1) * GOLDEN).
const MASK64 = (1n << 64n) - 1n;
const GOLDEN = 0x9e3779b97f4a7c15n;
const DOMAIN_DISK = 0x4e432d4449534b01n;
const DISK_DATA_OFFSET = 4096;

function mix64(x: bigint): bigint {
  let z = x & MASK64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return z ^ (z >> 31n);
}

/** The pattern byte the guest writes at device byte offset `devOffset` of /dev/vda. */
function diskPatternByte(seed: bigint, devOffset: number): number {
  const pos = BigInt(devOffset - DISK_DATA_OFFSET);
  const word = mix64(((seed ^ DOMAIN_DISK) + (pos / 8n + 1n) * GOLDEN) & MASK64);
  return Number((word >> (8n * (pos % 8n))) & 0xffn);
}

// ------------------------------------------------------------------ QEMU + QMP ---------
const running = new Set<Guest>();
const tempDirs: string[] = [];

async function tempDir(): Promise<string> {
  const dir = await mkdtemp("/tmp/nc-guest-test-");
  tempDirs.push(dir);
  return dir;
}

interface BootOptions {
  image: Image;
  runDir: string;
  overlay: string;
  /** nc.* parameters appended to the manifest's cmdline */
  params?: string;
  memoryMiB?: number;
  machine?: "q35" | "pc";
}

/** One QEMU process booted the way the control plane boots it, with its serial log. */
class Guest {
  readonly serialLog: string;
  readonly qmpSocket: string;
  private readonly proc: ChildProcess;
  private stderr = "";
  exitCode: number | null = null;
  exitSignal: NodeJS.Signals | null = null;
  readonly exited: Promise<void>;

  constructor(o: BootOptions) {
    this.serialLog = path.join(o.runDir, "serial.log");
    this.qmpSocket = path.join(o.runDir, "qmp.sock");
    const append = [o.image.manifest.cmdline, o.params ?? ""].join(" ").trim();
    const argv = [
      ...["-accel", "tcg", "-machine", o.machine ?? "q35", "-cpu", "max", "-smp", "1"],
      ...["-m", String(o.memoryMiB ?? 256), "-nodefaults", "-no-user-config", "-display", "none"],
      ...["-kernel", o.image.kernel, "-initrd", o.image.initrd, "-append", append],
      ...["-drive", `file=${o.overlay},if=none,id=disk0,format=qcow2,cache=none`],
      ...["-device", "virtio-blk-pci,drive=disk0"],
      ...["-chardev", `file,id=ser0,path=${this.serialLog}`, "-serial", "chardev:ser0"],
      ...["-qmp", `unix:${this.qmpSocket},server=on,wait=off`],
    ];
    this.proc = spawn("qemu-system-x86_64", argv, { stdio: ["ignore", "ignore", "pipe"] });
    this.proc.stderr?.setEncoding("utf8");
    this.proc.stderr?.on("data", (d: string) => {
      this.stderr += d;
    });
    this.exited = new Promise((resolve) => {
      this.proc.on("exit", (code, signal) => {
        this.exitCode = code;
        this.exitSignal = signal;
        running.delete(this);
        resolve();
      });
      this.proc.on("error", (err) => {
        this.stderr += String(err);
        this.exitCode = -1;
        running.delete(this);
        resolve();
      });
    });
    running.add(this);
  }

  get alive(): boolean {
    return this.exitCode === null && this.exitSignal === null;
  }

  /** Complete lines of the serial log so far, without the tty's \r. */
  async lines(): Promise<string[]> {
    let text: string;
    try {
      text = await readFile(this.serialLog, "utf8");
    } catch {
      return [];
    }
    const cut = text.lastIndexOf("\n");
    if (cut < 0) return [];
    return text
      .slice(0, cut)
      .split("\n")
      .map((l) => l.replace(/\r$/, ""));
  }

  /** Waits (bounded) until `check` finds what it wants in the log lines. */
  async waitLines<T>(what: string, check: (lines: string[]) => T | undefined, timeoutMs: number): Promise<T> {
    try {
      return await waitFor(
        async () => {
          const found = check(await this.lines());
          if (found !== undefined) return found;
          if (!this.alive) throw new Error(`QEMU exited (code ${this.exitCode}, signal ${this.exitSignal})`);
          return undefined;
        },
        { timeoutMs, intervalMs: 100, what },
      );
    } catch (err) {
      const tail = (await this.lines()).slice(-15).join("\n");
      throw new Error(
        `${(err as Error).message}\n--- serial log tail ---\n${tail}\n--- qemu stderr ---\n${this.stderr}`,
      );
    }
  }

  /** Waits for the first line matching `re`; returns it. */
  waitLine(re: RegExp, timeoutMs = 60_000): Promise<string> {
    return this.waitLines(String(re), (ls) => ls.find((l) => re.test(l)), timeoutMs);
  }

  /** Sends one QMP command (after the capabilities handshake) and waits for its return. */
  qmp(command: string, timeoutMs = 10_000): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const sock = connect(this.qmpSocket);
      let buf = "";
      let stage: "greeting" | "caps" | "command" = "greeting";
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new Error(`QMP ${command} timed out`));
      }, timeoutMs);
      const finish = (err: Error | null, value?: unknown) => {
        clearTimeout(timer);
        sock.end();
        if (err) reject(err);
        else resolve(value);
      };
      sock.setEncoding("utf8");
      sock.on("error", (err) => finish(err));
      sock.on("data", (chunk: string) => {
        buf += chunk;
        for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
          const line = buf.slice(0, i).trim();
          buf = buf.slice(i + 1);
          if (!line) continue;
          const msg = JSON.parse(line) as Record<string, unknown>;
          if ("error" in msg) return finish(new Error(`QMP ${command}: ${JSON.stringify(msg.error)}`));
          if (stage === "greeting" && "QMP" in msg) {
            stage = "caps";
            sock.write(`${JSON.stringify({ execute: "qmp_capabilities" })}\n`);
          } else if (stage === "caps" && "return" in msg) {
            stage = "command";
            sock.write(`${JSON.stringify({ execute: command })}\n`);
          } else if (stage === "command" && "return" in msg) {
            return finish(null, msg.return);
          }
        }
      });
    });
  }

  /** ACPI power button through QMP; the guest must print NC-SHUTDOWN and power off. */
  async powerdown(timeoutMs = 30_000): Promise<void> {
    await this.qmp("system_powerdown");
    await waitFor(() => !this.alive, {
      timeoutMs,
      intervalMs: 100,
      what: "QEMU to exit after system_powerdown",
    });
  }

  async kill(): Promise<void> {
    if (this.alive) this.proc.kill("SIGKILL");
    await this.exited;
  }
}

async function newOverlay(image: Image, dir: string): Promise<string> {
  const overlay = path.join(dir, "overlay.qcow2");
  await execFileP("qemu-img", ["create", "-q", "-f", "qcow2", "-b", image.disk, "-F", "qcow2", overlay]);
  return overlay;
}

const HEARTBEAT = /^NC-HEARTBEAT seq=(\d+) uptime=(\d+\.\d{2})$/;

function heartbeats(lines: string[]): { seq: number; uptime: number }[] {
  return lines.flatMap((l) => {
    const m = HEARTBEAT.exec(l);
    return m ? [{ seq: Number(m[1]), uptime: Number(m[2]) }] : [];
  });
}

function expectConsecutive(beats: { seq: number; uptime: number }[]): void {
  beats.forEach((b, i) => {
    expect(b.seq).toBe(i + 1);
    if (i > 0) {
      const dt = b.uptime - beats[i - 1]!.uptime;
      expect(dt).toBeGreaterThan(0.5);
      expect(dt).toBeLessThan(5);
    }
  });
}

// ------------------------------------------------------------------ the suite ----------
let image: Image;

beforeAll(async () => {
  image = (await build()).image; // builds into <repo>/.cache/images, or hits the cache
}, 300_000);

afterAll(async () => {
  await Promise.all([...running].map((g) => g.kill()));
  await Promise.all(tempDirs.map((d) => rm(d, { recursive: true, force: true })));
});

describe("guest image build", () => {
  it("writes a manifest naming the kernel, initrd and a 64 MiB zero qcow2 disk", async () => {
    const m = image.manifest;
    expect(m.name).toBe("novacron-guest");
    expect(m.inputsHash).toMatch(/^[0-9a-f]{64}$/);
    expect(path.basename(image.dir)).toBe(`guest-${m.inputsHash.slice(0, 16)}`);
    expect(m).toMatchObject({
      kernel: "vmlinuz",
      initrd: "initrd.img",
      disk: "disk.qcow2",
      diskFormat: "qcow2",
    });
    expect(m.cmdline).toMatch(/^console=ttyS0 /);
    expect(m.cmdline).not.toMatch(/\bnc\./);
    expect(m.minMemoryMiB).toBeGreaterThanOrEqual(64);
    expect(m.minMemoryMiB).toBeLessThanOrEqual(256);
    for (const f of [image.kernel, image.initrd, image.disk]) expect((await stat(f)).size).toBeGreaterThan(0);
    const { stdout } = await execFileP("qemu-img", ["info", "--output=json", image.disk]);
    const info = JSON.parse(stdout) as {
      format: string;
      "virtual-size": number;
      "backing-filename"?: string;
    };
    expect(info.format).toBe("qcow2");
    expect(info["virtual-size"]).toBe(64 * 1024 * 1024);
    expect(info["backing-filename"]).toBeUndefined();
  });

  it("is cached: a second call is a fast cache hit that leaves the image alone", async () => {
    const before = await stat(image.manifestPath);
    const again = await build();
    expect(again.image.manifestPath).toBe(image.manifestPath);
    expect(again.stderr).toMatch(/cache hit/);
    expect(again.ms).toBeLessThan(10_000);
    expect((await stat(image.manifestPath)).mtimeMs).toBe(before.mtimeMs);
  });

  it("is reproducible: two forced builds into different dirs give identical bytes", async () => {
    const root = await tempDir();
    const a = await build(["--out", path.join(root, "a"), "--force"]);
    const b = await build(["--out", path.join(root, "b"), "--force"]);
    expect(a.stderr).not.toMatch(/cache hit/);
    expect(b.stderr).not.toMatch(/cache hit/);
    expect(a.image.manifest).toEqual(image.manifest);
    expect(b.image.manifest).toEqual(image.manifest);
    for (const key of ["initrd", "disk", "kernel"] as const) {
      const ha = await sha256(a.image[key]);
      expect(await sha256(b.image[key]), key).toBe(ha);
      expect(await sha256(image[key]), key).toBe(ha);
    }
    // a completed build leaves no temp dirs behind
    const { stdout } = await execFileP("ls", ["-A", path.join(root, "a")]);
    expect(stdout.split("\n").filter((n) => n.startsWith(".tmp-") || n.startsWith(".old-"))).toEqual([]);
  }, 240_000);
});

describe("guest image build failures", () => {
  it("a killed build leaves no half-built image, and the next build cleans up and succeeds", async () => {
    const out = path.join(await tempDir(), "out");
    const child = spawn(buildScript, ["--out", out], { detached: true, stdio: "ignore" });
    const gone = new Promise((resolve) => child.on("exit", resolve));
    try {
      await waitFor(
        async () => (await readdir(out).catch(() => [] as string[])).some((n) => n.startsWith(".tmp-")),
        {
          timeoutMs: 60_000,
          intervalMs: 20,
          what: "the build's temp dir",
        },
      );
    } finally {
      process.kill(-child.pid!, "SIGKILL"); // the whole process group, like a CI timeout
      await gone;
    }
    for (const n of (await readdir(out)).filter((x) => x.startsWith("guest-"))) {
      expect((await stat(path.join(out, n, "manifest.json"))).size).toBeGreaterThan(0);
    }
    const again = await build(["--out", out]);
    expect(await sha256(again.image.initrd)).toBe(await sha256(image.initrd));
    expect((await readdir(out)).filter((n) => n.startsWith(".tmp-") || n.startsWith(".old-"))).toEqual([]);
  }, 240_000);

  it("exits 2 naming the apt-get command when a host tool is missing", async () => {
    const root = await tempDir();
    const bin = path.join(root, "bin");
    await mkdir(bin);
    // a PATH with every host command except cpio
    for (const dir of ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]) {
      for (const name of await readdir(dir).catch(() => [] as string[])) {
        if (name !== "cpio") await symlink(path.join(dir, name), path.join(bin, name)).catch(() => undefined);
      }
    }
    const err = await execFileP(buildScript, ["--out", path.join(root, "out")], {
      env: { ...process.env, PATH: bin },
    }).then(
      () => undefined,
      (e: unknown) => e as { code: number; stderr: string },
    );
    expect(err?.code).toBe(2);
    expect(err?.stderr).toMatch(/apt-get install -y cpio$/m);
  });
});

describe("guest boot under TCG", () => {
  it("boots with -m 256: NC-READY, consecutive heartbeats, clean console, QMP powerdown", async () => {
    const dir = await tempDir();
    const g = new Guest({ image, runDir: dir, overlay: await newOverlay(image, dir) });
    try {
      const t0 = Date.now();
      const ready = await g.waitLine(/^NC-READY /, 90_000);
      const bootMs = Date.now() - t0;
      const m = /^NC-READY version=1 mem_mb=(\d+) cmdline_ok=1$/.exec(ready);
      expect(m, ready).not.toBeNull();
      expect(Number(m![1])).toBeGreaterThan(150);
      expect(Number(m![1])).toBeLessThanOrEqual(256);
      const beats = await g.waitLines(
        "3 heartbeats",
        (ls) => (heartbeats(ls).length >= 3 ? heartbeats(ls) : undefined),
        30_000,
      );
      expectConsecutive(beats);
      // nothing but workload lines on the console: kernel messages are kept off it
      const lines = await g.lines();
      expect(lines.filter((l) => !l.startsWith("NC-"))).toEqual([]);
      expect(lines[0]).toBe(ready);
      const t1 = Date.now();
      await g.powerdown();
      const offMs = Date.now() - t1;
      expect(g.exitCode).toBe(0);
      expect(await g.lines()).toContain("NC-SHUTDOWN");
      console.info(
        `guest image (TCG, -m 256): NC-READY ${bootMs} ms after QEMU start, exit ${offMs} ms after system_powerdown`,
      );
    } finally {
      await g.kill();
    }
  }, 150_000);

  it("boots with -machine pc at the manifest's minimum memory and survives bad parameters", async () => {
    const dir = await tempDir();
    const g = new Guest({
      image,
      runDir: dir,
      overlay: await newOverlay(image, dir),
      machine: "pc",
      memoryMiB: image.manifest.minMemoryMiB,
      params: "nc.dirty_mb=lots nc.mix=zero:90,text:20 nc.verify_every=0 nc.bogus=1 nc.pattern_seed=7",
    });
    try {
      expect(await g.waitLine(/^NC-READY /, 90_000)).toMatch(/^NC-READY version=1 mem_mb=\d+ cmdline_ok=0$/);
      const lines = await g.waitLines(
        "2 heartbeats",
        (ls) => (heartbeats(ls).length >= 2 ? ls : undefined),
        30_000,
      );
      expect(lines).toEqual(
        expect.arrayContaining([
          "NC-ERROR param=nc.dirty_mb value=lots reason=not_a_number",
          "NC-ERROR param=nc.mix value=zero:90,text:20 reason=bad_mix",
          "NC-ERROR param=nc.verify_every value=0 reason=out_of_range",
          "NC-ERROR param=nc.bogus value=1 reason=unknown_param",
        ]),
      );
      // bad values switch their feature off; nothing crashed and heartbeats go on
      expect(lines.some((l) => l.startsWith("NC-DIRTY-START") || l.startsWith("NC-PATTERN-WRITTEN"))).toBe(
        false,
      );
      expectConsecutive(heartbeats(lines));
      await g.powerdown();
      expect(g.exitCode).toBe(0);
      expect(await g.lines()).toContain("NC-SHUTDOWN");
    } finally {
      await g.kill();
    }
  }, 150_000);

  it("dirtier: fills and re-dirties memory at the given rate while heartbeats continue", async () => {
    const dir = await tempDir();
    const g = new Guest({
      image,
      runDir: dir,
      overlay: await newOverlay(image, dir),
      params: "nc.dirty_mb=32 nc.dirty_rate_mbps=8",
    });
    try {
      await g.waitLine(/^NC-READY version=1 mem_mb=\d+ cmdline_ok=1$/, 90_000);
      await g.waitLine(/^NC-DIRTY-START /, 60_000);
      const lines = await g.waitLines(
        "NC-DIRTY-STATS",
        (ls) => (ls.some((l) => l.startsWith("NC-DIRTY-STATS ")) ? ls : undefined),
        60_000,
      );
      expect(lines).toContain("NC-DIRTY-START mb=32 rate_mbps=8 mix=zero:20,text:50,random:30");
      const start = lines.indexOf("NC-DIRTY-START mb=32 rate_mbps=8 mix=zero:20,text:50,random:30");
      const stats = lines.find((l) => l.startsWith("NC-DIRTY-STATS "))!;
      const m = /^NC-DIRTY-STATS pages_dirtied=(\d+)$/.exec(stats);
      expect(m, stats).not.toBeNull();
      // 8 MiB/s for 10 s = 20480 pages; a loaded host may fall somewhat behind
      expect(Number(m![1])).toBeGreaterThan(20480 * 0.5);
      expect(Number(m![1])).toBeLessThanOrEqual(20480 * 1.05);
      const after = heartbeats(lines.slice(start));
      expect(after.length).toBeGreaterThanOrEqual(8);
      expectConsecutive(heartbeats(lines));
      // the power button is honoured while the dirtier keeps the vCPU busy
      await g.powerdown();
      expect(g.exitCode).toBe(0);
      expect(await g.lines()).toContain("NC-SHUTDOWN");
    } finally {
      await g.kill();
    }
  }, 150_000);

  it("pattern: written, survives a power cycle, and a corrupted disk sector fails verification", async () => {
    const dir = await tempDir();
    const overlay = await newOverlay(image, dir);
    const params = "nc.pattern_seed=42 nc.verify_every=2";
    const pass = (round: number) => `NC-VERIFY PASS seed=42 mem_mb=16 disk_mb=16 round=${round}`;
    const boot = async (n: number) => {
      const runDir = path.join(dir, `boot${n}`);
      await mkdir(runDir);
      return new Guest({ image, runDir, overlay, params });
    };

    // 1. fresh overlay: the pattern is written, then verified
    let g = await boot(1);
    try {
      await g.waitLine(/^NC-PATTERN-WRITTEN /, 90_000);
      await g.waitLine(/^NC-VERIFY /, 30_000);
      const lines = await g.lines();
      expect(lines).toContain("NC-PATTERN-WRITTEN seed=42 mem_mb=16 disk_mb=16 disk=written");
      expect(lines.find((l) => l.startsWith("NC-VERIFY "))).toBe(pass(1));
      await g.powerdown();
      expect(g.exitCode).toBe(0);
      expect(await g.lines()).toContain("NC-SHUTDOWN");
    } finally {
      await g.kill();
    }

    // the header and data on the disk are as documented
    const raw = path.join(dir, "disk.raw");
    await execFileP("qemu-img", ["convert", "-f", "qcow2", "-O", "raw", overlay, raw]);
    const bytes = await readFile(raw);
    await rm(raw);
    expect(bytes.subarray(0, 16).toString("latin1")).toBe("NCPATTERN\0\0\0\0\0\0\0");
    expect(bytes.readUInt32LE(16)).toBe(1);
    expect(bytes.readBigUInt64LE(24)).toBe(42n);
    expect(bytes.readBigUInt64LE(32)).toBe(16n);
    expect(bytes.readBigUInt64LE(40)).toBe(4096n);
    for (const off of [4096, 4097, 4103, 4104, 1048576 + 5, 4096 + 16 * 1048576 - 1]) {
      expect(bytes[off], `byte at ${off}`).toBe(diskPatternByte(42n, off));
    }
    expect(bytes[4096 + 16 * 1048576]).toBe(0);

    // 2. same overlay again: the existing pattern is verified first, then periodically
    g = await boot(2);
    try {
      await g.waitLine(/^NC-PATTERN-WRITTEN /, 90_000);
      await g.waitLine(/^NC-VERIFY .* round=1$/, 30_000);
      const lines = (await g.lines()).filter((l) => !HEARTBEAT.test(l));
      expect(lines[0]).toMatch(/^NC-READY version=1 mem_mb=\d+ cmdline_ok=1$/);
      expect(lines.slice(1)).toEqual([
        pass(0),
        "NC-PATTERN-WRITTEN seed=42 mem_mb=16 disk_mb=16 disk=existing",
        pass(1),
      ]);
      await g.powerdown();
      expect(g.exitCode).toBe(0);
    } finally {
      await g.kill();
    }

    // 3. corrupt one 4 KiB block of the pattern area while QEMU is stopped
    await execFileP("qemu-io", ["-f", "qcow2", "-c", "write -P 0xAB 1M 4k", overlay]);
    let expected = -1;
    for (let off = 1048576; off < 1048576 + 4096 && expected < 0; off++) {
      if (diskPatternByte(42n, off) !== 0xab) expected = off;
    }
    expect(expected).toBeGreaterThanOrEqual(1048576);
    g = await boot(3);
    try {
      await g.waitLine(/^NC-VERIFY .* round=1$/, 90_000);
      const lines = await g.lines();
      expect(lines).toContain(`NC-VERIFY FAIL seed=42 what=disk offset=${expected} round=0`);
      expect(lines).toContain("NC-PATTERN-WRITTEN seed=42 mem_mb=16 disk_mb=16 disk=existing");
      expect(lines).toContain(`NC-VERIFY FAIL seed=42 what=disk offset=${expected} round=1`);
      expect(lines.some((l) => l.startsWith("NC-VERIFY PASS"))).toBe(false);
      await g.powerdown();
      expect(g.exitCode).toBe(0);
    } finally {
      await g.kill();
    }
  }, 300_000);
});
