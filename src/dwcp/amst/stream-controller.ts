/**
 * How many connections an AMST session should use (docs/dwcp.md §4.4). The start comes
 * from the bandwidth-delay product: enough streams that each carries at most
 * `perStreamBytes` (512 KiB) of the BDP (a loss-limited TCP stream rarely keeps more in flight).
 * Then a hill climb on measured goodput: add streams while goodput improves by more
 * than `gain`, step back and hold when it does not, and now and then probe one fewer.
 *
 * Goodput over a lossy path is noisy and a new TCP connection needs a few RTTs to ramp
 * up, so each decision waits `settle` samples after a change and then averages the next
 * `average` samples. Only samples where the sender was backlogged count, since an idle
 * sender says nothing about the link. Bounded by [min, max] from the mode.
 */
/** Controller settings. */
export interface StreamControllerOptions {
  min: number;
  max: number;
  /** Relative goodput improvement that justifies more streams. @defaultValue 0.05 */
  gain?: number;
  /** Decisions to skip after a failed probe. @defaultValue 2 */
  hold?: number;
  /** Samples ignored after a change while new connections ramp up. @defaultValue 1 */
  settle?: number;
  /** Samples averaged per decision. @defaultValue 4 */
  average?: number;
}

/** Initial stream count for a link with `bandwidthBps` bits/s and `rttMs` RTT. */
export function initialStreams(
  bandwidthBps: number,
  rttMs: number,
  min: number,
  max: number,
  perStreamBytes = 512 * 1024,
): number {
  const bdp = (bandwidthBps / 8) * (rttMs / 1000);
  return Math.min(max, Math.max(min, Math.ceil(bdp / perStreamBytes)));
}

/** Hill-climbing stream-count controller. Pure: feed samples, read `target`. */
export class StreamController {
  private n: number;
  private min: number;
  private max: number;
  private readonly gain: number;
  private readonly holdIntervals: number;
  private baseline: { n: number; goodput: number } | null = null;
  private holdLeft = 0;
  private probeDown = false;
  private readonly settle: number;
  private readonly average: number;
  private skip: number;
  private acc = 0;
  private accN = 0;

  constructor(initial: number, options: StreamControllerOptions) {
    this.min = options.min;
    this.max = options.max;
    this.gain = options.gain ?? 0.05;
    this.holdIntervals = options.hold ?? 2;
    this.settle = options.settle ?? 1;
    this.average = options.average ?? 4;
    this.skip = this.settle;
    this.n = this.clamp(initial);
  }

  /** The stream count to use now. */
  get target(): number {
    return this.n;
  }

  /** Changes the bounds (mode change); the target is clamped into them. */
  setBounds(min: number, max: number): void {
    this.min = min;
    this.max = max;
    this.n = this.clamp(this.n);
    this.baseline = null;
    this.acc = 0;
    this.accN = 0;
  }

  /** Feeds one interval's goodput (bytes/s) measured with the current target; returns the new target. */
  observe(sample: number, backlogged: boolean): number {
    if (!backlogged) return this.n;
    if (this.skip > 0) {
      this.skip--;
      return this.n;
    }
    this.acc += sample;
    this.accN++;
    if (this.accN < this.average) return this.n;
    const goodput = this.acc / this.accN;
    this.acc = 0;
    this.accN = 0;
    const before = this.n;
    const after = this.decide(goodput);
    if (after !== before) this.skip = this.settle;
    return after;
  }

  private decide(goodput: number): number {
    if (this.baseline === null) {
      // First measurement at this count: remember it and probe upward (or downward at the cap).
      this.baseline = { n: this.n, goodput };
      if (this.holdLeft > 0) {
        this.holdLeft--;
        this.baseline = null;
        return this.n;
      }
      return this.step(this.probeDown ? -1 : +1);
    }
    const { n: prevN, goodput: prevG } = this.baseline;
    const better = goodput > prevG * (1 + this.gain);
    // Dropping a stream must cost (almost) nothing to be kept: on a lossy path each stream
    // adds its own share, and noise would otherwise walk the count down.
    const worse = goodput < prevG * 0.98;
    if (this.n > prevN) {
      if (better) {
        this.baseline = { n: this.n, goodput };
        return this.step(Math.max(1, Math.ceil(this.n / 4)));
      }
      // More streams did not help: go back and hold, next probe goes down.
      this.n = prevN;
      this.probeDown = true;
    } else {
      if (!worse) {
        // Fewer streams cost nothing: keep the reduction.
        this.baseline = null;
        this.holdLeft = this.holdIntervals;
        this.probeDown = false;
        return this.n;
      }
      this.n = prevN;
      this.probeDown = false;
    }
    this.baseline = null;
    this.holdLeft = this.holdIntervals;
    return this.n;
  }

  private step(delta: number): number {
    const next = this.clamp(this.n + delta);
    if (next === this.n) {
      this.baseline = null;
      this.holdLeft = this.holdIntervals;
      this.probeDown = !this.probeDown;
    }
    this.n = next;
    return this.n;
  }

  private clamp(n: number): number {
    return Math.min(this.max, Math.max(this.min, Math.round(n)));
  }
}
