/**
 * The QEMU driver against real QEMU under TCG: launch, adopt after a simulated agent
 * restart, graceful stop with fallback, external kills, start failures, raw QMP, and the
 * accelerator probe. Guests boot only the probe boot sector (it halts with interrupts
 * off, so it also ignores the ACPI power button); every QEMU runs with 64 MiB.
 */
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { probeAccelerator, probeBootSector, runProbeGuest } from "../src/compute/qemu/accel.js";
import { queryKvm, queryStatus, queryVersion } from "../src/compute/qemu/commands.js";
import { isQemuFor } from "../src/compute/qemu/host-files.js";
import { type MachineConfig, vmRunPaths } from "../src/compute/qemu/machine.js";
import { QemuProcess } from "../src/compute/qemu/process.js";
import { createOverlay, qemuImgInfo } from "../src/compute/qemu/qemu-img.js";
import { isNovaError, type NovaError } from "../src/lib/errors.js";
import { waitFor } from "../src/lib/wait.js";

/** The error `p` rejects with; fails the test when it resolves. */
async function rejection(p: Promise<unknown>): Promise<NovaError> {
  try {
    await p;
  } catch (err) {
    return err as NovaError;
  }
  throw new Error("expected the promise to reject");
}

let root: string;
let baseImage: string;
let acpiImage: string;
/** Every pid a test started, SIGKILLed in afterEach if still ours. */
const started: Array<{ pid: number; vmId: string }> = [];

beforeAll(async () => {
  root = await mkdtemp("/tmp/nc-qemu-driver-");
  baseImage = path.join(root, "probe-boot.raw");
  const image = Buffer.alloc(1024 * 1024);
  probeBootSector().copy(image);
  await writeFile(baseImage, image);
  acpiImage = path.join(root, "acpi-boot.raw");
  const acpi = Buffer.alloc(1024 * 1024);
  acpiBootSector().copy(acpi);
  await writeFile(acpiImage, acpi);
});

/**
 * A boot sector for a guest that honours the ACPI power button: prints READY on COM1,
 * enables the power-button event (PM1_EN at PMBASE 0x600 + 2), polls PM1_STS until the
 * button is pressed, then enters S5 by writing SLP_EN to PM1_CNT (0x604).
 */
function acpiBootSector(): Buffer {
  const code: number[] = [];
  for (const c of Buffer.from("READY\n")) code.push(0xb0, c, 0xba, 0xf8, 0x03, 0xee); // mov al,c; mov dx,0x3f8; out dx,al
  code.push(0xba, 0x02, 0x06, 0xb8, 0x00, 0x01, 0xef); // mov dx,0x602; mov ax,0x100; out dx,ax
  code.push(0xba, 0x00, 0x06, 0xed, 0xa9, 0x00, 0x01, 0x74, 0xfa); // mov dx,0x600; wait: in ax,dx; test ax,0x100; jz wait
  code.push(0xba, 0x04, 0x06, 0xb8, 0x00, 0x20, 0xef); // mov dx,0x604; mov ax,0x2000; out dx,ax
  code.push(0xfa, 0xf4, 0xeb, 0xfd); // cli; hlt; jmp back to hlt
  const sector = Buffer.alloc(512);
  sector.set(code);
  sector[510] = 0x55;
  sector[511] = 0xaa;
  return sector;
}

afterEach(async () => {
  for (const { pid, vmId } of started.splice(0)) {
    if (await isQemuFor(pid, vmId)) process.kill(pid, "SIGKILL");
    await waitFor(async () => !(await isQemuFor(pid, vmId)), {
      timeoutMs: 10_000,
      what: `pid ${pid} to exit`,
    });
  }
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function newMachine(overrides: Partial<MachineConfig> = {}, base = baseImage): Promise<MachineConfig> {
  const vmId = randomUUID();
  const runDir = path.join(root, vmId.slice(0, 8));
  const diskPath = path.join(root, `${vmId.slice(0, 8)}.qcow2`);
  await createOverlay(base, "raw", diskPath);
  return {
    vmId,
    name: `t-${vmId.slice(0, 8)}`,
    vcpus: 1,
    memoryMiB: 64,
    accel: "tcg",
    diskPath,
    runDir,
    ...overrides,
  };
}

async function launch(cfg: MachineConfig): Promise<QemuProcess> {
  const proc = await QemuProcess.launch(cfg);
  started.push({ pid: proc.pid, vmId: cfg.vmId });
  return proc;
}

describe("QemuProcess against real QEMU (tcg)", () => {
  it("launches a VM that QMP reports as running, with an identifiable cmdline and pidfile", async () => {
    const cfg = await newMachine();
    const proc = await launch(cfg);
    expect(await queryStatus(proc.qmp)).toEqual({ status: "running", running: true });
    expect(await queryKvm(proc.qmp)).toMatchObject({ enabled: false });
    const paths = vmRunPaths(cfg.runDir);
    expect(Number((await readFile(paths.pidfile, "utf8")).trim())).toBe(proc.pid);
    expect(await isQemuFor(proc.pid, cfg.vmId)).toBe(true);
    expect((await qemuImgInfo(cfg.diskPath)).backingFile).toBe(baseImage);
    await proc.kill();
  });

  it("refuses to launch a second QEMU for a VM that is already running", async () => {
    const cfg = await newMachine();
    const proc = await launch(cfg);
    const err = await rejection(QemuProcess.launch(cfg));
    expect(isNovaError(err, "NOVA_ILLEGAL_STATE")).toBe(true);
    expect(await queryStatus(proc.qmp)).toMatchObject({ running: true });
    await proc.kill();
  });

  it("re-adopts a running VM after the agent forgets it: same pid, still running, QMP works", async () => {
    const cfg = await newMachine();
    let first: QemuProcess | undefined = await launch(cfg);
    const pid = first.pid;
    // Simulate an agent restart: drop the session and the handle.
    await first.qmp.close();
    first = undefined;

    const adopted = await QemuProcess.adopt(cfg);
    expect(adopted).not.toBeNull();
    expect(adopted!.pid).toBe(pid);
    expect(adopted!.adopted).toBe(true);
    expect(await queryStatus(adopted!.qmp)).toEqual({ status: "running", running: true });
    expect((await queryVersion(adopted!.qmp)).qemu.major).toBeGreaterThanOrEqual(7);
    const exit = await adopted!.stop({ graceMs: 500 });
    expect(exit.expected).toBe(true);
  });

  it("keeps the VM running when the agent process that launched it is SIGKILLed, and a new agent adopts it", async () => {
    const cfg = await newMachine();
    const script = path.join(root, "fake-agent.ts");
    await writeFile(
      script,
      [
        `import { QemuProcess } from ${JSON.stringify(path.resolve("src/compute/qemu/process.ts"))};`,
        "const proc = await QemuProcess.launch(JSON.parse(process.env.NC_TEST_CFG!));",
        "console.log(JSON.stringify({ pid: proc.pid }));",
        "setInterval(() => {}, 1000); // stay up like an agent until killed",
      ].join("\n"),
    );
    const agent = spawn(process.execPath, [path.resolve("node_modules/vite-node/vite-node.mjs"), script], {
      env: { ...process.env, NC_TEST_CFG: JSON.stringify(cfg) },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const agentGone = new Promise((resolve) => agent.once("exit", resolve));
    let out = "";
    let errOut = "";
    agent.stdout.on("data", (d) => {
      out += String(d);
    });
    agent.stderr.on("data", (d) => {
      errOut += String(d);
    });
    try {
      const pid = await waitFor(() => /\{"pid":(\d+)\}/.exec(out)?.[1], {
        timeoutMs: 30_000,
        what: "the fake agent to launch QEMU",
      }).catch((err: Error) => {
        throw new Error(`${err.message}; agent stderr: ${errOut}`);
      });
      started.push({ pid: Number(pid), vmId: cfg.vmId });
      agent.kill("SIGKILL");
      await agentGone;

      expect(await isQemuFor(Number(pid), cfg.vmId)).toBe(true);
      const adopted = (await QemuProcess.adopt(cfg))!;
      expect(adopted.pid).toBe(Number(pid));
      expect(await queryStatus(adopted.qmp)).toEqual({ status: "running", running: true });
      expect(await adopted.kill()).toMatchObject({ expected: true });
    } finally {
      agent.kill("SIGKILL");
    }
  });

  it("adopt returns null and removes stale run files when the VM's QEMU is gone", async () => {
    const cfg = await newMachine();
    const proc = await launch(cfg);
    const paths = vmRunPaths(cfg.runDir);
    await proc.qmp.close();
    process.kill(proc.pid, "SIGKILL");
    await proc.exited;
    // SIGKILL leaves QEMU's files behind; recreate them in case exit handling removed them.
    await writeFile(paths.pidfile, `${proc.pid}\n`);
    expect(await QemuProcess.adopt(cfg)).toBeNull();
    expect(existsSync(paths.pidfile)).toBe(false);
    expect(existsSync(paths.qmpSocket)).toBe(false);
  });

  it("stop falls back to quit within the grace period when the guest ignores ACPI, and reports it expected", async () => {
    const cfg = await newMachine();
    const proc = await launch(cfg);
    const t0 = Date.now();
    const exit = await proc.stop({ graceMs: 1_000 });
    expect(Date.now() - t0).toBeLessThan(1_000 + 5_000);
    expect(exit).toMatchObject({ expected: true, shutdownReason: "host-qmp-quit" });
    expect(exit.reason).toContain("quit");
    expect(await isQemuFor(proc.pid, cfg.vmId)).toBe(false);
    expect(existsSync(vmRunPaths(cfg.runDir).qmpSocket)).toBe(false);
  });

  it("stop lets a guest that honours the ACPI power button power off by itself", async () => {
    const cfg = await newMachine({}, acpiImage);
    const proc = await launch(cfg);
    const serialLog = vmRunPaths(cfg.runDir).serialLog;
    await waitFor(async () => (await readFile(serialLog, "utf8").catch(() => "")).includes("READY"), {
      timeoutMs: 20_000,
      what: "the guest to print READY",
    });
    const t0 = Date.now();
    const exit = await proc.stop({ graceMs: 20_000 });
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(exit).toEqual({
      reason: "guest powered off (guest-shutdown)",
      expected: true,
      shutdownReason: "guest-shutdown",
      code: 0,
      signal: null,
    });
  });

  it("reports an outside SIGKILL of its child as unexpected, naming SIGKILL", async () => {
    const cfg = await newMachine();
    const proc = await launch(cfg);
    process.kill(proc.pid, "SIGKILL");
    const exit = await proc.exited;
    expect(exit).toMatchObject({ expected: false, signal: "SIGKILL" });
    expect(exit.reason).toBe("QEMU was killed by SIGKILL");
  });

  it("reports an outside SIGKILL of an adopted QEMU as an unexpected exit", async () => {
    const cfg = await newMachine();
    const first = await launch(cfg);
    await first.qmp.close();
    const adopted = (await QemuProcess.adopt(cfg))!;
    process.kill(adopted.pid, "SIGKILL");
    const exit = await adopted.exited;
    expect(exit.expected).toBe(false);
    expect(exit.reason).toContain(`QEMU process ${adopted.pid} exited unexpectedly`);
  });

  it("fails to launch with a missing kernel, quoting QEMU's reason and leaving nothing running", async () => {
    const cfg = await newMachine({ kernelPath: path.join(root, "no-such-vmlinuz") });
    const err = await rejection(QemuProcess.launch(cfg));
    expect(isNovaError(err, "NOVA_QEMU_ERROR")).toBe(true);
    expect(err.message).toMatch(/QEMU exited with code 1.*could not open kernel file/);
    expect(err.message).toContain("no-such-vmlinuz");
    const paths = vmRunPaths(cfg.runDir);
    expect(existsSync(paths.qmpSocket)).toBe(false);
    expect(existsSync(paths.pidfile)).toBe(false);
    const pids = await findQemuPidsFor(cfg.vmId);
    expect(pids).toEqual([]);
  });

  it("fails to launch with a clear reason when the QEMU binary does not exist", async () => {
    const cfg = await newMachine();
    const err = await rejection(QemuProcess.launch(cfg, { qemuBinary: "/nonexistent/qemu" }));
    expect(isNovaError(err, "NOVA_QEMU_ERROR")).toBe(true);
    expect(err.message).toContain("/nonexistent/qemu");
  });
});

describe("QmpClient against real QEMU", () => {
  it("answers query-version and maps an unknown command to NOVA_QEMU_ERROR with class CommandNotFound", async () => {
    const cfg = await newMachine();
    const proc = await launch(cfg);
    const version = await queryVersion(proc.qmp);
    expect(version.qemu.major).toBeGreaterThanOrEqual(7);
    expect(proc.qmp.greeting.version.qemu.major).toBe(version.qemu.major);
    const err = await rejection(proc.qmp.execute("no-such-command"));
    expect(isNovaError(err, "NOVA_QEMU_ERROR")).toBe(true);
    expect(err.details).toMatchObject({ command: "no-such-command", qmpClass: "CommandNotFound" });
    // The session survives a failed command.
    expect(await queryStatus(proc.qmp)).toMatchObject({ running: true });
    await proc.kill();
  });

  it("delivers QEMU events to listeners", async () => {
    const cfg = await newMachine();
    const proc = await launch(cfg);
    const events: string[] = [];
    proc.qmp.onEvent((ev) => events.push(ev.event));
    await proc.qmp.execute("stop");
    await waitFor(() => events.includes("STOP"), { timeoutMs: 5_000, what: "the STOP event" });
    expect(await queryStatus(proc.qmp)).toEqual({ status: "paused", running: false });
    await proc.kill();
  });
});

describe("accelerator probe", () => {
  it("uses a boot sector that really boots: under TCG its marker appears", async () => {
    const result = await runProbeGuest({ accel: "tcg", timeoutMs: 30_000 });
    expect(result.markerSeen).toBe(true);
  });

  it("chooses KVM only when the KVM test guest printed its marker about as fast as TCG, and says why", async () => {
    const decision = await probeAccelerator({ force: "auto" });
    if (!existsSync("/dev/kvm")) {
      expect(decision).toMatchObject({ accel: "tcg", reason: "/dev/kvm does not exist" });
      return;
    }
    expect(decision.probe).toBeDefined();
    if (decision.accel === "kvm") expect(decision.probe!.markerSeen).toBe(true);
    else {
      expect(decision.reason).toMatch(/^\/dev\/kvm present but/);
      // A KVM guest that did boot was refused for being slower than the same under TCG.
      if (decision.probe!.markerSeen) expect(decision.reason).toMatch(/under TCG/);
    }
    // Whatever happened, the probe left no QEMU and no temp dir behind.
    expect((await readdir("/tmp")).filter((n) => n.startsWith("nc-qemu-probe-"))).toEqual([]);
  });

  it("gives up on a test guest that shows no progress in time and cleans up after it", async () => {
    const result = await runProbeGuest({ accel: "tcg", timeoutMs: 1 });
    expect(result.markerSeen).toBe(false);
    expect((await readdir("/tmp")).filter((n) => n.startsWith("nc-qemu-probe-"))).toEqual([]);
  });

  it("honours a forced TCG without probing", async () => {
    expect(await probeAccelerator({ force: "tcg" })).toEqual({
      accel: "tcg",
      reason: "TCG forced by configuration",
    });
  });
});

/** Pids whose cmdline carries `vmId` — there must be none after a failed launch. */
async function findQemuPidsFor(vmId: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    if (await isQemuFor(Number(entry), vmId).catch(() => false)) pids.push(Number(entry));
  }
  return pids;
}
