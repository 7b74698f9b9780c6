/**
 * Round-trip time estimation for a session (docs/dwcp.md §9.1): a smoothed RTT (7/8 old,
 * 1/8 new, as TCP does) and the minimum seen, seeded by the handshake exchange and fed by
 * PING/PONG probes. The minimum is the path's base RTT for mode detection; the smoothed
 * value, which includes queueing, sizes per-connection in-flight caps.
 */
export class RttEstimator {
  /** Smoothed RTT in ms, or null before any sample. */
  srtt: number | null = null;
  /** Lowest RTT seen in ms, or null. */
  min: number | null = null;

  constructor(seedMs?: number) {
    if (seedMs !== undefined) this.sample(seedMs);
  }

  /** Adds a sample; implausible values (negative, over 10 minutes) are ignored. */
  sample(ms: number): void {
    if (!(ms >= 0) || ms > 600_000) return;
    this.srtt = this.srtt === null ? ms : 0.875 * this.srtt + 0.125 * ms;
    this.min = this.min === null ? ms : Math.min(this.min, ms);
  }
}
