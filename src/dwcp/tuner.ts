/**
 * The adaptive loop of a DWCP sender (docs/dwcp.md §9): every interval it samples the
 * session (PBA meter), updates the bandwidth prediction and its running error, the
 * network mode, the stream count (StreamController within the mode's bounds) and the
 * zstd level (fast enough for the predicted link), and publishes metrics.
 */
import type { DwcpSession } from "./amst/session.js";
import { initialStreams, StreamController } from "./amst/stream-controller.js";
import type { BatchCompressor } from "./hde/codec.js";
import { chooseLevel } from "./hde/level.js";
import type { DwcpMetrics } from "./metrics.js";
import { ModeDetector, type NetworkMode } from "./mode.js";
import type { LinkShare } from "./pba/link-share.js";
import { ThroughputMeter } from "./pba/meter.js";
import type { RememberedPath } from "./pba/path-memory.js";
import { DampedHolt, type Predictor } from "./pba/predictor.js";

/** Tuner options. */
export interface TunerOptions {
  /** Sampling interval. @defaultValue 500 */
  intervalMs?: number;
  /** Prediction horizon in intervals. @defaultValue 4 */
  horizon?: number;
  /** Fixed stream count (disables adaptation). */
  fixedStreams?: number;
  /** Stream count to start the adaptation from, instead of the BDP estimate. */
  initialStreams?: number;
  /**
   * What this path last sustained (path-memory.ts): the session starts from its mode,
   * stream count, capacity and level instead of guessing, unless the path's RTT now is
   * not within half to twice what it was then.
   */
  remembered?: RememberedPath;
  /** Lower and upper stream bounds overriding the mode's. */
  streamBounds?: [number, number];
  /** Metrics to publish, if any. */
  metrics?: DwcpMetrics;
  /**
   * A link shared with other transfers whose capacity this tuner's prediction sets
   * (docs/dwcp.md §9.3). One tuner per link should own it.
   */
  linkShare?: LinkShare;
  /** Called after each interval with the state, for logs and traces. */
  onSample?: (s: TunerState) => void;
}

/** What the tuner currently believes and does. */
export interface TunerState {
  mode: NetworkMode;
  streams: number;
  goodputBps: number;
  predictedBps: number | null;
  rttMs: number | null;
  level: number;
  mape: number | null;
  /** The last interval was network-bound (see SessionStats.backlogged). */
  backlogged: boolean;
  /** Capacity measured by the probe (bytes/s), 0 when not probed. */
  probedBps: number;
}

/** Drives one session's stream count and one compressor's level. */
export class Tuner {
  private readonly meter = new ThroughputMeter();
  private readonly predictor: Predictor = new DampedHolt();
  private readonly detector: ModeDetector;
  private readonly streams: StreamController;
  private readonly interval: NodeJS.Timeout;
  private readonly poller: NodeJS.Timeout;
  private readonly horizon: number;
  private readonly minLevels = new Map<BatchCompressor, number>();
  private readonly pending: { due: number; predicted: number; acc: number; k: number }[] = [];
  private errSum = 0;
  private errN = 0;
  private lastPrediction: number | null = null;
  private capacityEstimate = 0;
  /** The best interval's goodput: what the path sustained at least, network-bound or not. */
  private peakGoodput = 0;
  /** A remembered capacity stands in for measurements during the first `horizon` intervals. */
  private recalledCapacity = 0;
  private ticks = 0;
  /** Path capacity from the PAD probe (bytes/s), a floor for mode detection. */
  private probed = 0;
  /** The latest state. */
  state: TunerState;
  /** The remembered path this session started from, if one was used. */
  readonly startedFrom: RememberedPath | null;
  /**
   * Resolves once the start-up capacity probe finished (at once on long paths). Await it
   * before producing data: a probe competing with the transfer measures the transfer.
   */
  readonly ready: Promise<void>;

  constructor(
    private readonly session: DwcpSession,
    private readonly compressors: BatchCompressor[],
    private readonly options: TunerOptions = {},
  ) {
    const rtt = session.stats().minRttMs ?? 1;
    const r = options.remembered;
    const recalled = r && rtt >= r.rttMs / 2 && rtt <= r.rttMs * 2 ? r : undefined;
    this.startedFrom = recalled ?? null;
    // Before any goodput is measured: the path's last figures, or a guess from the RTT.
    const initialMode: NetworkMode = recalled?.mode ?? (rtt < 10 ? "hybrid" : "internet");
    this.detector = new ModeDetector({ initial: initialMode });
    const [min, max] = options.streamBounds ?? [
      this.detector.profile.minStreams,
      this.detector.profile.maxStreams,
    ];
    // The first BDP estimate assumes a 1 Gbit/s path and 512 KiB in flight per stream; the
    // hill climb corrects it from measured goodput.
    const start =
      options.fixedStreams ??
      options.initialStreams ??
      (recalled ? Math.min(max, Math.max(min, recalled.streams)) : initialStreams(1e9, rtt, min, max));
    this.streams = new StreamController(start, { min, max });
    this.horizon = options.horizon ?? 4;
    this.state = {
      mode: initialMode,
      streams: start,
      goodputBps: 0,
      predictedBps: null,
      rttMs: rtt,
      level: 0,
      mape: null,
      backlogged: false,
      probedBps: 0,
    };
    // Until goodput is measured: at the remembered capacity; else compress on a long path,
    // not on a short one (likely fast, where the CPU rather than the link would be the
    // bottleneck).
    if (recalled) {
      this.recalledCapacity = recalled.capacityBps;
      this.applyLevel(recalled.capacityBps, true);
    } else this.applyLevel(null, initialMode === "internet");
    session.setFramePayload(this.detector.profile.frameBytes);
    void session.setStreamCount(start);
    // Only a path under 50 ms can be datacenter or hybrid; longer ones skip the probe. A
    // 1 MiB probe first; the 8 MiB one, accurate at Gbit/s, only where it costs milliseconds.
    this.ready =
      rtt < 50
        ? (async () => {
            const small = await session.probeCapacity(1024 * 1024);
            if (small === null) return;
            this.probed = small;
            if (small * 8 < 400e6) return;
            const big = await session.probeCapacity(8 * 1024 * 1024);
            if (big !== null) this.probed = Math.max(small, big);
          })().catch(() => undefined)
        : Promise.resolve();
    this.interval = setInterval(() => this.tick(), options.intervalMs ?? 500);
    this.poller = setInterval(() => this.meter.poll(session.stats()), 50);
    this.interval.unref();
    this.poller.unref();
  }

  /**
   * What this path sustained, for the next session to it (path-memory.ts): the capacity
   * measured while network-bound, else the best interval's goodput (a lower bound); null
   * before any interval was measured.
   */
  snapshot(now = Date.now()): RememberedPath | null {
    // Only this session's measurements: a remembered figure is not carried forward unseen.
    const capacityBps = this.capacityEstimate > 0 ? this.capacityEstimate : this.peakGoodput;
    if (capacityBps <= 0) return null;
    return {
      mode: this.state.mode,
      // The session may already be closed (its streams gone): its count at the last interval.
      streams: Math.max(1, this.session.isOpen ? this.session.streamCount : this.state.streams),
      capacityBps,
      networkBound: this.capacityEstimate > 0,
      predictedBps: this.lastPrediction,
      mape: this.state.mape,
      level: this.state.level,
      rttMs: this.session.stats().minRttMs ?? this.state.rttMs ?? 0,
      at: now,
    };
  }

  /** Stops the loop. */
  stop(): void {
    clearInterval(this.interval);
    clearInterval(this.poller);
  }

  private tick(): void {
    if (!this.session.isOpen) {
      this.stop();
      return;
    }
    const s = this.meter.sample(this.session.stats());
    if (!s) return;
    // Score earlier predictions whose horizon has now passed.
    for (const p of this.pending) {
      p.acc += s.goodputBps;
      p.k++;
    }
    while (this.pending.length > 0 && this.pending[0]!.k >= this.horizon) {
      const p = this.pending.shift()!;
      const actual = p.acc / p.k;
      if (actual > 0) {
        this.errSum += Math.abs(p.predicted - actual) / actual;
        this.errN++;
      }
    }
    if (s.backlogged) this.capacityEstimate = Math.max(s.goodputBps, this.capacityEstimate * 0.9);
    this.peakGoodput = Math.max(this.peakGoodput, s.goodputBps);
    this.ticks++;
    this.predictor.update(s.goodputBps);
    const predicted = this.predictor.predict(this.horizon);
    if (predicted !== null) this.pending.push({ due: 0, predicted, acc: 0, k: 0 });
    this.lastPrediction = predicted;
    const recalled = this.ticks <= this.horizon ? this.recalledCapacity : 0;
    const bandwidth = Math.max(predicted ?? 0, this.capacityEstimate, recalled);
    // The mode is about the path: what a cheap probe got through is a lower bound on it,
    // even when our own encoding (CPU) keeps goodput lower.
    const pathBandwidth = Math.max(bandwidth, this.probed);
    const rtt = s.minRttMs ?? s.rttMs ?? 1;
    // Goodput underestimates capacity while the sender is not backlogged: only a
    // backlogged interval may move the mode toward "slower".
    const mode =
      s.backlogged || pathBandwidth * 8 >= 1e9
        ? this.detector.observe({ rttMs: rtt, bandwidthBps: pathBandwidth * 8 })
        : this.detector.mode;
    if (mode !== this.state.mode) {
      if (!this.options.streamBounds)
        this.streams.setBounds(this.detector.profile.minStreams, this.detector.profile.maxStreams);
      this.session.setFramePayload(this.detector.profile.frameBytes);
    }
    if (this.options.fixedStreams === undefined) {
      const n = this.streams.observe(s.goodputBps, s.backlogged);
      if (n !== this.session.streamCount) void this.session.setStreamCount(n);
    }
    this.state = {
      mode,
      streams: this.session.streamCount,
      goodputBps: s.goodputBps,
      predictedBps: this.lastPrediction,
      rttMs: s.rttMs,
      level: this.state.level,
      mape: this.errN > 0 ? (100 * this.errSum) / this.errN : null,
      backlogged: s.backlogged,
      probedBps: this.probed,
    };
    this.applyLevel(pathBandwidth > 0 ? pathBandwidth : null, s.backlogged);
    this.shareCapacity(pathBandwidth, s.backlogged);
    this.publish();
    this.options.onSample?.(this.state);
  }

  /**
   * Compression trades CPU for link bytes. On an internet-mode link the link is the
   * bottleneck by definition; on faster links it only pays while the sender is actually
   * waiting for the network — when it is not, the CPU is the bottleneck and compressing
   * would slow the transfer down.
   */
  private applyLevel(linkBytesPerSec: number | null = null, networkBound = true): void {
    const c = this.compressors[0];
    const internet = this.detector.mode === "internet";
    const level =
      !internet && !networkBound
        ? 0
        : chooseLevel({
            maxLevel: this.detector.profile.maxZstdLevel,
            linkBytesPerSec,
            margin: 2,
            ...(c ? { measured: c.speed } : {}),
          });
    for (const comp of this.compressors) comp.setLevel(Math.max(this.minLevels.get(comp) ?? 0, level));
    this.state.level = level;
  }

  /**
   * Puts a compressor made after the tuner (a relay that starts later) under its level
   * policy, never below `minLevel`; the first one's measured speeds inform the policy.
   */
  adopt(compressor: BatchCompressor, minLevel = 0): void {
    this.compressors.push(compressor);
    this.minLevels.set(compressor, minLevel);
    compressor.setLevel(Math.max(minLevel, this.state.level));
  }

  /**
   * Hands the prediction to the shared link. While the sender is not network-bound its
   * goodput says only what the pacer allowed, so the capacity is offered with 25 %
   * headroom (as BBR probes with a gain of 1.25): a share set too low grows back within
   * a few intervals instead of starving every transfer on it for good.
   */
  private shareCapacity(bandwidth: number, networkBound: boolean): void {
    const share = this.options.linkShare;
    if (!share || bandwidth <= 0) return;
    share.setCapacity(networkBound ? bandwidth : Math.max(bandwidth * 1.25, share.capacityBps));
  }

  private publish(): void {
    const m = this.options.metrics;
    if (!m) return;
    m.setMode(this.state.mode);
    m.streams.set(this.state.streams);
    if (this.state.predictedBps !== null) m.predictedBandwidth.set(this.state.predictedBps);
    if (this.state.rttMs !== null) m.rtt.set(this.state.rttMs / 1000);
    m.goodput.set(this.state.goodputBps);
    // The state keeps percent, for logs; the metric is a ratio (Prometheus base units).
    if (this.state.mape !== null) m.predictionError.set(this.state.mape / 100);
    m.zstdLevel.set(this.state.level);
  }
}
