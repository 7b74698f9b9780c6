/**
 * Network mode detection (docs/dwcp.md §9): datacenter (RTT < 10 ms and >= 1 Gbit/s),
 * internet (RTT > 50 ms or < 1 Gbit/s), hybrid otherwise. Hysteresis keeps it from
 * flapping: a new mode must be indicated by `confirmSamples` consecutive samples, and
 * the thresholds for leaving the current mode are widened by `margin`. The mode sets
 * stream-count bounds, the highest zstd level and the frame payload size.
 */

/** The three modes. */
export const Modes = ["datacenter", "hybrid", "internet"] as const;
/** A network mode. */
export type NetworkMode = (typeof Modes)[number];

/** What a mode configures. */
export interface ModeProfile {
  minStreams: number;
  maxStreams: number;
  /** Highest zstd level; 0 means compression off. */
  maxZstdLevel: number;
  /** Frame payload size in bytes. */
  frameBytes: number;
}

/** Settings per mode. */
export const MODE_PROFILES: Record<NetworkMode, ModeProfile> = {
  datacenter: { minStreams: 1, maxStreams: 4, maxZstdLevel: 1, frameBytes: 256 * 1024 },
  hybrid: { minStreams: 2, maxStreams: 8, maxZstdLevel: 3, frameBytes: 128 * 1024 },
  internet: { minStreams: 4, maxStreams: 64, maxZstdLevel: 6, frameBytes: 64 * 1024 },
};

/** One measurement. */
export interface LinkSample {
  rttMs: number;
  /** Link bandwidth (estimated capacity) in bits/s. */
  bandwidthBps: number;
}

/** Classifies one sample by the exact thresholds, without hysteresis. */
export function classify(s: LinkSample): NetworkMode {
  if (s.rttMs < 10 && s.bandwidthBps >= 1e9) return "datacenter";
  if (s.rttMs > 50 || s.bandwidthBps < 1e9) return "internet";
  return "hybrid";
}

/** Options of the detector. */
export interface ModeDetectorOptions {
  /** Mode before any sample. @defaultValue "hybrid" */
  initial?: NetworkMode;
  /** Consecutive samples needed to switch. @defaultValue 3 */
  confirmSamples?: number;
  /** Relative widening of thresholds when deciding to leave the current mode. @defaultValue 0.2 */
  margin?: number;
}

/** Mode detector with hysteresis. */
export class ModeDetector {
  private current: NetworkMode;
  private candidate: NetworkMode | null = null;
  private streak = 0;
  private readonly confirm: number;
  private readonly margin: number;
  /** Number of mode changes so far. */
  switches = 0;

  constructor(options: ModeDetectorOptions = {}) {
    this.current = options.initial ?? "hybrid";
    this.confirm = options.confirmSamples ?? 3;
    this.margin = options.margin ?? 0.2;
  }

  /** The current mode. */
  get mode(): NetworkMode {
    return this.current;
  }

  /** The current mode's settings. */
  get profile(): ModeProfile {
    return MODE_PROFILES[this.current];
  }

  /** Feeds a sample; returns the (possibly new) mode. */
  observe(sample: LinkSample): NetworkMode {
    const exact = classify(sample);
    if (exact === this.current) {
      this.candidate = null;
      this.streak = 0;
      return this.current;
    }
    // Leaving needs the sample to be clearly outside the current mode: re-check with the
    // current mode's band widened by the margin.
    if (this.insideWidened(sample)) {
      this.candidate = null;
      this.streak = 0;
      return this.current;
    }
    if (exact === this.candidate) this.streak++;
    else {
      this.candidate = exact;
      this.streak = 1;
    }
    if (this.streak >= this.confirm) {
      this.current = exact;
      this.candidate = null;
      this.streak = 0;
      this.switches++;
    }
    return this.current;
  }

  private insideWidened(s: LinkSample): boolean {
    const m = this.margin;
    switch (this.current) {
      case "datacenter":
        return s.rttMs < 10 * (1 + m) && s.bandwidthBps >= 1e9 * (1 - m);
      case "internet":
        return s.rttMs > 50 * (1 - m) || s.bandwidthBps < 1e9 * (1 + m);
      case "hybrid":
        return s.rttMs <= 50 * (1 + m) && s.rttMs >= 10 * (1 - m) && s.bandwidthBps >= 1e9 * (1 - m);
    }
  }
}
