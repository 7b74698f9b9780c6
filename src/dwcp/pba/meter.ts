/**
 * Passive throughput and RTT accounting for PBA (docs/dwcp.md §9.1): turns the session's
 * monotonic "bytes received by the peer" counter into per-interval goodput samples, remembers
 * whether the sender was backlogged (only then does goodput measure the link rather than
 * the application), and keeps the RTT from the session's PING/PONG probes.
 */
import type { SessionStats } from "../amst/session-config.js";

/** One interval's measurement. */
export interface MeterSample {
  /** End of the interval (ms, performance.now()). */
  at: number;
  /** Wire bytes per second the peer received during the interval. */
  goodputBps: number;
  /** Smoothed RTT (ms) at the end of the interval, if known. */
  rttMs: number | null;
  /** Lowest RTT seen (ms), if known. */
  minRttMs: number | null;
  /** The sender had more to send than the link took for most of the interval. */
  backlogged: boolean;
  streams: number;
}

/** Samples a session's statistics at a fixed cadence. */
export class ThroughputMeter {
  private lastAt: number | null = null;
  private lastBytes = 0;
  private backlogChecks = 0;
  private backlogHits = 0;

  /** Call often (e.g. every 50 ms) to learn how much of the time the sender was backlogged. */
  poll(stats: SessionStats): void {
    this.backlogChecks++;
    if (stats.backlogged) this.backlogHits++;
  }

  /** Closes an interval; returns its sample, or null for the first call. */
  sample(stats: SessionStats, now = performance.now()): MeterSample | null {
    const prev = this.lastAt;
    const bytes = stats.bytesReceived - this.lastBytes;
    this.lastAt = now;
    this.lastBytes = stats.bytesReceived;
    const backlogged =
      this.backlogChecks > 0 ? this.backlogHits / this.backlogChecks >= 0.7 : stats.backlogged;
    this.backlogChecks = 0;
    this.backlogHits = 0;
    if (prev === null || now <= prev) return null;
    return {
      at: now,
      goodputBps: (bytes * 1000) / (now - prev),
      rttMs: stats.srttMs,
      minRttMs: stats.minRttMs,
      backlogged,
      streams: stats.streams,
    };
  }
}
