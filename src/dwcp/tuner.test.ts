/**
 * The tuner's start on a real loopback session: from a remembered path when its RTT
 * still matches, from a guess otherwise, and what it hands back for the next session.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { waitFor } from "../lib/wait.js";
import { dialSession } from "./amst/dial.js";
import { DwcpListener } from "./amst/listen.js";
import type { DwcpSession } from "./amst/session.js";
import { BatchCompressor } from "./hde/codec.js";
import type { RememberedPath } from "./pba/path-memory.js";
import { Tuner } from "./tuner.js";

let listener: DwcpListener;
let src: DwcpSession;
let dst: DwcpSession;
const tuners: Tuner[] = [];

beforeEach(async () => {
  listener = await DwcpListener.listen({ port: 0 });
  const accepted = listener.accept();
  src = await dialSession({ port: listener.port, streams: 1 });
  dst = await accepted;
});

afterEach(async () => {
  for (const t of tuners.splice(0)) t.stop();
  src.destroy();
  dst.destroy();
  await listener.close();
});

const tuner = (o: ConstructorParameters<typeof Tuner>[2] = {}, comps: BatchCompressor[] = []) => {
  const t = new Tuner(src, comps, { intervalMs: 60_000, ...o });
  tuners.push(t);
  return t;
};

const remembered = (rttMs: number): RememberedPath => ({
  mode: "internet",
  streams: 6,
  capacityBps: 2_000_000,
  networkBound: true,
  predictedBps: 1_900_000,
  mape: 10,
  level: 3,
  rttMs,
  at: Date.now(),
});

describe("Tuner start", () => {
  it("starts from the remembered path: its mode, stream count and capacity", async () => {
    const rtt = src.stats().minRttMs!;
    const level = new BatchCompressor(0);
    const t = tuner({ remembered: remembered(rtt) }, [level]);
    expect(t.startedFrom?.streams).toBe(6);
    expect(t.state.mode).toBe("internet");
    expect(t.state.streams).toBe(6);
    // A 2 MB/s internet path compresses from the first batch.
    expect(level.level).toBeGreaterThan(0);
    // The connections beyond the first are dialed in the background.
    await waitFor(() => src.streamCount === 6 || undefined, { timeoutMs: 10_000, what: "6 connections" });
    // Nothing measured in this session: nothing to hand on (the old record stays).
    expect(t.snapshot()).toBeNull();
  });

  it("hands on the best goodput it measured when never network-bound", async () => {
    const t = tuner({ intervalMs: 50 });
    const ch = src.openChannel("data");
    const drained = (async () => {
      const rx = await dst.accept();
      while ((await rx.read()) !== null);
    })();
    // Data must flow across intervals: the first one only starts the meter.
    const deadline = Date.now() + 10_000;
    while (t.snapshot() === null && Date.now() < deadline) {
      await ch.send(Buffer.alloc(64 * 1024, 7));
      await new Promise((r) => setTimeout(r, 5));
    }
    await ch.end();
    await drained;
    const snap = t.snapshot();
    expect(snap?.capacityBps).toBeGreaterThan(0);
    expect(snap?.streams).toBe(src.streamCount);
  });

  it("guesses as before when the path's RTT is no longer the remembered one", () => {
    const rtt = src.stats().minRttMs!;
    const t = tuner({ remembered: remembered(rtt * 3 + 10) });
    expect(t.startedFrom).toBeNull();
    // Loopback: under 10 ms, so hybrid, and no capacity known yet.
    expect(t.state.mode).toBe("hybrid");
    expect(t.snapshot()).toBeNull();
  });
});
