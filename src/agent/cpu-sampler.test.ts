import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { CpuSampler, coresBetween, parseProcStatTicks } from "./cpu-sampler.js";

const stat = (utime: number, stime: number, comm = "qemu-system-x86") =>
  `4242 (${comm}) S 1 4242 4242 0 -1 4194560 100 0 0 0 ${utime} ${stime} 0 0 20 0 5 0 100 0 0`;

describe("parseProcStatTicks", () => {
  it("adds utime and stime, whatever the command name holds", () => {
    expect(parseProcStatTicks(stat(150, 50))).toBe(200);
    expect(parseProcStatTicks(stat(7, 3, "a b) (c"))).toBe(10);
    expect(parseProcStatTicks("garbage")).toBeNull();
    expect(parseProcStatTicks("1 (x) S 1")).toBeNull();
  });
});

describe("coresBetween", () => {
  it("is CPU seconds over wall seconds, and 0 for readings out of order or a counter that went back", () => {
    expect(coresBetween({ at: 0, ticks: 0 }, { at: 4000, ticks: 200 })).toBe(0.5);
    expect(coresBetween({ at: 4000, ticks: 0 }, { at: 4000, ticks: 200 })).toBe(0);
    expect(coresBetween({ at: 0, ticks: 300 }, { at: 1000, ticks: 200 })).toBe(0);
  });
});

describe("CpuSampler", () => {
  it("reports cores over the trailing window once two readings are a second apart", async () => {
    let now = 0;
    const ticks = new Map<number, number>([[10, 0]]);
    const sampler = new CpuSampler(
      async (pid) => stat(ticks.get(pid) ?? 0, 0),
      () => now,
    );
    expect(await sampler.sample([{ id: "a", pid: 10 }])).toEqual({ cpuCores: 0, vms: {} });
    now = 2000;
    ticks.set(10, 300); // 3 s of CPU in 2 s: 1.5 cores
    expect(await sampler.sample([{ id: "a", pid: 10 }])).toEqual({ cpuCores: 1.5, vms: { a: 1.5 } });
    // Readings under a second apart do not count as a new reading.
    now = 2500;
    ticks.set(10, 10_000);
    expect((await sampler.sample([{ id: "a", pid: 10 }])).vms.a).toBe(1.5);
    // Beyond the window the oldest readings go: 20 s later at a steady 0.5 cores.
    for (let t = 4000; t <= 24_000; t += 2000) {
      now = t;
      ticks.set(10, 300 + ((t - 2000) / 1000) * 50);
      await sampler.sample([{ id: "a", pid: 10 }]);
    }
    expect((await sampler.sample([{ id: "a", pid: 10 }])).vms.a).toBe(0.5);
  });

  it("starts over when a VM's process changes, and forgets VMs it no longer holds", async () => {
    let now = 0;
    const sampler = new CpuSampler(
      async (pid) => stat(pid === 1 ? now / 10 : 0, 0),
      () => now,
    );
    await sampler.sample([{ id: "a", pid: 1 }]);
    now = 2000;
    expect((await sampler.sample([{ id: "a", pid: 1 }])).vms.a).toBe(1);
    now = 4000;
    expect(await sampler.sample([{ id: "a", pid: 2 }])).toEqual({ cpuCores: 0, vms: {} });
    expect(await sampler.sample([])).toEqual({ cpuCores: 0, vms: {} });
  });

  it("skips a process that has gone or a VM without one", async () => {
    const sampler = new CpuSampler(async () => {
      throw new Error("ENOENT");
    });
    expect(
      await sampler.sample([
        { id: "a", pid: 99 },
        { id: "b", pid: null },
      ]),
    ).toEqual({ cpuCores: 0, vms: {} });
  });

  it("measures a real busy process from /proc", async () => {
    const busy = spawn(process.execPath, ["-e", "const e=Date.now()+4000;while(Date.now()<e){}"]);
    try {
      const sampler = new CpuSampler();
      await sampler.sample([{ id: "busy", pid: busy.pid! }]);
      await new Promise<void>((r) => setTimeout(r, 1500));
      const { vms } = await sampler.sample([{ id: "busy", pid: busy.pid! }]);
      // One spinning thread: about a core, less when the machine is busy.
      expect(vms.busy).toBeGreaterThan(0.2);
      expect(vms.busy).toBeLessThan(1.6);
    } finally {
      busy.kill("SIGKILL");
    }
  });
});
