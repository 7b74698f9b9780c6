/**
 * Choosing the zstd level (docs/dwcp.md §7.4): the highest level allowed by the mode
 * whose measured compression speed is at least `margin` (2) times the link's byte rate, so
 * compression never becomes the bottleneck. Speeds start from a prior table (measured
 * on text-like pages on a 2-core x86 VM) and are replaced by what this process measures.
 */

/** Candidate levels, ascending. */
export const LEVELS = [1, 3, 6, 9] as const;

/** Prior compression speed in input bytes/s per level, used until measured. */
export const PRIOR_SPEED: Record<number, number> = { 1: 250e6, 3: 250e6, 6: 40e6, 9: 28e6 };

/** Inputs of a level decision. */
export interface LevelInputs {
  /** Highest level the mode allows (0 = compression off). */
  maxLevel: number;
  /** Predicted link rate in bytes/s, or null when unknown. */
  linkBytesPerSec: number | null;
  /** Measured speeds: level -> {bytes, ns}. */
  measured?: ReadonlyMap<number, { bytes: number; ns: number }>;
  /** Required speed headroom over the link. @defaultValue 2 */
  margin?: number;
}

/** Measured speed for `level` when enough was seen, else the prior. */
export function levelSpeed(level: number, measured?: LevelInputs["measured"]): number {
  const m = measured?.get(level);
  if (m && m.bytes >= 4 * 1024 * 1024 && m.ns > 0) return (m.bytes / m.ns) * 1e9;
  return PRIOR_SPEED[level] ?? 20e6;
}

/** The level to use now (0 = off). */
export function chooseLevel(inputs: LevelInputs): number {
  if (inputs.maxLevel <= 0) return 0;
  const margin = inputs.margin ?? 2;
  if (inputs.linkBytesPerSec === null) return Math.min(3, inputs.maxLevel);
  let best = 0;
  for (const level of LEVELS) {
    if (level > inputs.maxLevel) break;
    if (levelSpeed(level, inputs.measured) >= margin * inputs.linkBytesPerSec) best = level;
  }
  return best;
}
