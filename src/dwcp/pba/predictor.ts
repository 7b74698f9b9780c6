/**
 * Bandwidth predictors for PBA (docs/dwcp.md §9.2) and their error measurement. Each
 * predictor is fed one goodput sample per interval and predicts the mean goodput of the
 * next `horizon` intervals. MAPE (mean absolute percentage error) against what really
 * happened is how we compare them; `npm run bench:pba` runs this on emulator traces.
 */

/** An online predictor. */
export interface Predictor {
  readonly name: string;
  /** Feeds the sample of the interval that just ended. */
  update(sample: number): void;
  /** Predicted mean of the next `horizon` samples (null before any sample). */
  predict(horizon: number): number | null;
}

/** Predicts the last sample: the naive baseline. */
export class LastValue implements Predictor {
  readonly name = "last-value";
  private last: number | null = null;
  update(sample: number): void {
    this.last = sample;
  }
  predict(): number | null {
    return this.last;
  }
}

/** Exponentially weighted moving average. */
export class Ewma implements Predictor {
  readonly name: string;
  private value: number | null = null;
  constructor(private readonly alpha = 0.3) {
    this.name = `ewma(${alpha})`;
  }
  update(sample: number): void {
    this.value = this.value === null ? sample : this.alpha * sample + (1 - this.alpha) * this.value;
  }
  predict(): number | null {
    return this.value;
  }
}

/**
 * Holt's linear smoothing with a damped trend: follows a ramp (slow start, a link being
 * throttled) without the overshoot of an undamped trend, and never predicts below 0.
 */
export class DampedHolt implements Predictor {
  readonly name: string;
  private level: number | null = null;
  private trend = 0;
  constructor(
    private readonly alpha = 0.4,
    private readonly beta = 0.1,
    private readonly phi = 0.8,
  ) {
    this.name = `holt(${alpha},${beta},${phi})`;
  }
  update(sample: number): void {
    if (this.level === null) {
      this.level = sample;
      return;
    }
    const prev = this.level;
    this.level = this.alpha * sample + (1 - this.alpha) * (prev + this.phi * this.trend);
    this.trend = this.beta * (this.level - prev) + (1 - this.beta) * this.phi * this.trend;
  }
  predict(horizon: number): number | null {
    if (this.level === null) return null;
    // Mean of the damped forecasts for steps 1..horizon.
    let sum = 0;
    let damp = 0;
    for (let h = 1; h <= horizon; h++) {
      damp += this.phi ** h;
      sum += this.level + damp * this.trend;
    }
    return Math.max(0, sum / horizon);
  }
}

/**
 * Median of the last `window` samples: robust to the single-interval dips a lossy link
 * shows (a retransmission timeout) while still following a real change within
 * window/2 intervals.
 */
export class SlidingMedian implements Predictor {
  readonly name: string;
  private readonly buf: number[] = [];
  constructor(private readonly window = 5) {
    this.name = `median(${window})`;
  }
  update(sample: number): void {
    this.buf.push(sample);
    if (this.buf.length > this.window) this.buf.shift();
  }
  predict(): number | null {
    if (this.buf.length === 0) return null;
    const s = [...this.buf].sort((a, b) => a - b);
    const m = s.length >> 1;
    return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
  }
}

/** Result of evaluating a predictor on a trace. */
export interface PredictorScore {
  name: string;
  /** Mean absolute percentage error, in percent. */
  mape: number;
  /** Number of predictions scored. */
  n: number;
}

/**
 * Scores `make()` on `trace` (goodput samples, one per interval): at every step after
 * `warmup`, predict the mean of the next `horizon` samples, then compare. Steps whose
 * actual mean is below `floor` are skipped (a percentage of ~0 is meaningless).
 */
export function evaluate(
  make: () => Predictor,
  trace: readonly number[],
  horizon: number,
  warmup = 4,
  floor = 1,
): PredictorScore {
  const p = make();
  let sum = 0;
  let n = 0;
  for (let t = 0; t < trace.length; t++) {
    p.update(trace[t]!);
    if (t < warmup || t + horizon >= trace.length) continue;
    let actual = 0;
    for (let k = 1; k <= horizon; k++) actual += trace[t + k]!;
    actual /= horizon;
    const pred = p.predict(horizon);
    if (pred === null || actual < floor) continue;
    sum += Math.abs(pred - actual) / actual;
    n++;
  }
  return { name: p.name, mape: n === 0 ? Number.NaN : (100 * sum) / n, n };
}
