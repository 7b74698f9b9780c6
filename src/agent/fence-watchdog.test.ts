import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { readFencedRecord, runWatchdog, watchdogStep } from "./fence-watchdog.js";
import { fenceDeadline, HaLease, monoNowMs, readLeaseFile } from "./ha-lease.js";

describe("the watchdog's decision", () => {
  it("waits while the lease runs, kills once it has run out, and exits when QEMU is gone", () => {
    expect(watchdogStep(1000, 1500, true)).toBe("wait");
    expect(watchdogStep(1500, 1500, true)).toBe("kill");
    expect(watchdogStep(9000, 1500, true)).toBe("kill");
    expect(watchdogStep(1000, 1500, false)).toBe("exit");
  });

  it("kills when there is no lease at all (the safe side)", () => {
    expect(watchdogStep(1000, undefined, true)).toBe("kill");
  });

  it("started before its QEMU, waits for it until the lease ends, then gives up", () => {
    expect(watchdogStep(1000, 1500, false, false)).toBe("wait");
    expect(watchdogStep(1500, 1500, false, false)).toBe("exit");
    expect(watchdogStep(1000, 1500, true, false)).toBe("wait");
  });
});

describe("the agent's lease", () => {
  let dir = "";
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "nc-lease-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("counts from the heartbeat's send time and ends selfFenceAfterMs later, never after the lease", () => {
    expect(fenceDeadline(1000, { durationMs: 15_000, selfFenceAfterMs: 10_000 })).toBe(11_000);
    expect(fenceDeadline(1000, { durationMs: 5_000, selfFenceAfterMs: 10_000 })).toBe(6_000);
  });

  it("is on disk once renewed, and a reply to an older heartbeat never moves it backwards", async () => {
    const lease = new HaLease(dir);
    await lease.init();
    expect(lease.current()).toBe(false);
    const now = monoNowMs();
    await lease.renew(now, { durationMs: 15_000, selfFenceAfterMs: 10_000 });
    expect(lease.current()).toBe(true);
    expect((await readLeaseFile(lease.file))?.fenceAtMonoMs).toBe(now + 10_000);
    await lease.renew(now - 5000, { durationMs: 15_000, selfFenceAfterMs: 10_000 });
    expect((await readLeaseFile(lease.file))?.fenceAtMonoMs).toBe(now + 10_000);
    const again = new HaLease(dir);
    await again.init();
    expect(again.deadline).toBe(now + 10_000);
  });
});

describe("the fence watchdog process loop", () => {
  let dir = "";
  let victim: ChildProcess | undefined;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "nc-watchdog-"));
  });
  afterEach(async () => {
    victim?.kill("SIGKILL");
    await rm(dir, { recursive: true, force: true });
  });

  /** A stand-in for QEMU: a process whose command line names the VM dir, its pid in qemu.pid. */
  async function startVictim(): Promise<{ exited: Promise<NodeJS.Signals | null> }> {
    // Named like QEMU (argv[0]), as the watchdog only ever kills a qemu binary.
    victim = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)", dir], {
      stdio: "ignore",
      argv0: "qemu-system-x86_64",
    });
    const exited = new Promise<NodeJS.Signals | null>((resolve) =>
      victim!.on("exit", (_c, sig) => resolve(sig)),
    );
    await writeFile(path.join(dir, "qemu.pid"), `${victim.pid}\n`);
    // Wrapped: an async function returning a promise would wait for it.
    return { exited };
  }

  it("keeps the VM alive while the lease is renewed and SIGKILLs it once renewals stop, recording when", async () => {
    const { exited } = await startVictim();
    const lease = new HaLease(dir);
    const grant = { durationMs: 1500, selfFenceAfterMs: 600 };
    await lease.renew(monoNowMs(), grant);
    const watching = runWatchdog({ leaseFile: lease.file, vmDir: dir, pollMs: 50 });
    // Renewed for a while: the victim lives past several unrenewed deadlines' worth of time.
    const renewUntil = monoNowMs() + 1500;
    while (monoNowMs() < renewUntil) {
      await lease.renew(monoNowMs(), grant);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(victim!.exitCode).toBeNull();
    const lastDeadline = lease.deadline!;
    expect(await watching).toBe("killed");
    expect(await exited).toBe("SIGKILL");
    const record = await readFencedRecord(dir);
    expect(record?.pid).toBe(victim!.pid);
    expect(record?.fenceAtMonoMs).toBe(lastDeadline);
    expect(record!.atMonoMs).toBeGreaterThanOrEqual(lastDeadline);
  });

  it("exits without killing anything when its QEMU is gone, and never kills a pid that is not its QEMU", async () => {
    const { exited } = await startVictim();
    const lease = new HaLease(dir);
    await lease.renew(monoNowMs(), { durationMs: 2000, selfFenceAfterMs: 1500 });
    const watching = runWatchdog({ leaseFile: lease.file, vmDir: dir, pollMs: 50 });
    victim!.kill("SIGTERM");
    expect(await exited).toBe("SIGTERM");
    expect(await watching).toBe("gone");
    // A pidfile naming a process of another command line (this test runner) is not QEMU's.
    await writeFile(path.join(dir, "qemu.pid"), `${process.pid}\n`);
    await writeFile(lease.file, "{}");
    expect(await runWatchdog({ leaseFile: lease.file, vmDir: dir, pollMs: 50 })).toBe("gone");
    expect(await readFencedRecord(dir)).toBeUndefined();
    // A QEMU that never appears (its launch failed) is not waited for beyond the grace,
    // however long the lease is renewed.
    await lease.renew(monoNowMs(), { durationMs: 60_000, selfFenceAfterMs: 50_000 });
    expect(await runWatchdog({ leaseFile: lease.file, vmDir: dir, pollMs: 50, startGraceMs: 300 })).toBe(
      "gone",
    );
  });
});
