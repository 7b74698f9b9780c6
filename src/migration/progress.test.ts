import { describe, expect, it } from "vitest";
import { toProgress } from "./progress.js";

describe("migration progress", () => {
  it("estimates time left from the sending rate net of the dirty rate", () => {
    const p = toProgress("memory", {
      vmStatus: "running",
      mirror: { jobId: "j", status: "ready", ready: true, offset: 10, len: 10 },
      memory: {
        status: "active",
        totalBytes: 1000e6,
        transferredBytes: 600e6,
        remainingBytes: 400e6,
        pass: 2,
        pagesPerSecond: 1000,
        dirtyBytesPerSecond: 50e6,
        mbps: 800,
        expectedDowntimeMs: 120,
      },
    });
    // 800 Mbit/s = 100 MB/s, minus 50 MB/s dirtied → 400 MB left / 50 MB/s = 8 s.
    expect(p.etaSeconds).toBe(8);
    expect(p).toMatchObject({
      pass: 2,
      diskBytesDone: 10,
      expectedDowntimeMs: 120,
      memoryBytesRemaining: 400e6,
    });
  });

  it("has no ETA when the guest dirties memory faster than the link sends it", () => {
    const p = toProgress("memory", {
      vmStatus: "running",
      mirror: null,
      memory: {
        status: "active",
        totalBytes: 1,
        transferredBytes: 0,
        remainingBytes: 100,
        pass: 5,
        pagesPerSecond: 1,
        dirtyBytesPerSecond: 200e6,
        mbps: 800,
      },
    });
    expect(p.etaSeconds).toBeNull();
  });

  it("shows the disk mirror before memory starts", () => {
    const p = toProgress("disk-mirror", {
      vmStatus: "running",
      mirror: { jobId: "j", status: "running", ready: false, offset: 5, len: 20 },
      memory: null,
    });
    expect(p).toMatchObject({
      phase: "disk-mirror",
      diskBytesDone: 5,
      diskBytesTotal: 20,
      memoryBytesTotal: 0,
      etaSeconds: null,
    });
  });
});
