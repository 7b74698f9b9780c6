/**
 * Sharing one link among concurrent transfers (docs/dwcp.md §9.3). Allocation order:
 *  1. every transfer gets its minimum (capped by what it still has to send);
 *  2. transfers with a deadline get the rate that meets it (remaining / time left), if
 *     capacity allows; when deadlines together need more than the link, they share
 *     what is there in proportion to need and are flagged at risk;
 *  3. what is left is split by weight, max-min fair: a transfer never gets more than it
 *     can use (its `maxBps`), and what it cannot use goes to the others.
 * Pure functions; `LinkShare` (link-share.ts) applies the result with token buckets.
 */

/** A transfer competing for the link. */
export interface TransferDemand {
  id: string;
  /** Relative share of spare capacity. @defaultValue 1 */
  weight?: number;
  /** Guaranteed rate in bytes/s. @defaultValue 0 */
  minBps?: number;
  /** Most it can use in bytes/s (e.g. its source speed). @defaultValue Infinity */
  maxBps?: number;
  /** Bytes still to send. */
  remainingBytes: number;
  /** Absolute deadline (ms, same clock as `now`). */
  deadline?: number;
}

/** One transfer's allocation. */
export interface Allocation {
  rateBps: number;
  /** Seconds until done at this rate (Infinity when the rate is 0). */
  etaSeconds: number;
  /** The deadline cannot be met with this allocation. */
  atRisk: boolean;
}

/** Computes allocations of `capacityBps` bytes/s at time `now` (ms). */
export function allocate(
  capacityBps: number,
  transfers: readonly TransferDemand[],
  now: number,
): Map<string, Allocation> {
  const active = transfers.filter((t) => t.remainingBytes > 0);
  const rate = new Map<string, number>();
  const cap = (t: TransferDemand): number => t.maxBps ?? Number.POSITIVE_INFINITY;
  let left = Math.max(0, capacityBps);

  // 1. Minimums (scaled down together if even they do not fit).
  const mins = active.map((t) => Math.min(t.minBps ?? 0, cap(t)));
  const minSum = mins.reduce((a, b) => a + b, 0);
  const minScale = minSum > left && minSum > 0 ? left / minSum : 1;
  for (const [i, t] of active.entries()) rate.set(t.id, mins[i]! * minScale);
  left -= minSum * minScale;

  // 2. Deadlines.
  const needs = active
    .filter((t) => t.deadline !== undefined)
    .map((t) => {
      const secs = Math.max(0.001, (t.deadline! - now) / 1000);
      const need = Math.min(cap(t), t.remainingBytes / secs) - rate.get(t.id)!;
      return { t, need: Math.max(0, need) };
    });
  const needSum = needs.reduce((a, b) => a + b.need, 0);
  const needScale = needSum > left && needSum > 0 ? left / needSum : 1;
  for (const { t, need } of needs) rate.set(t.id, rate.get(t.id)! + need * needScale);
  left -= needSum * needScale;

  // 3. Weighted max-min fair split of the rest (water-filling).
  let open = active.filter((t) => rate.get(t.id)! < cap(t));
  while (left > 1e-9 && open.length > 0) {
    const wsum = open.reduce((a, t) => a + (t.weight ?? 1), 0);
    let used = 0;
    const still: TransferDemand[] = [];
    for (const t of open) {
      const give = (left * (t.weight ?? 1)) / wsum;
      const room = cap(t) - rate.get(t.id)!;
      const g = Math.min(give, room);
      rate.set(t.id, rate.get(t.id)! + g);
      used += g;
      if (g < give - 1e-9) continue;
      still.push(t);
    }
    left -= used;
    if (still.length === open.length) break;
    open = still;
  }

  const out = new Map<string, Allocation>();
  for (const t of transfers) {
    const r = rate.get(t.id) ?? 0;
    const eta = t.remainingBytes <= 0 ? 0 : r > 0 ? t.remainingBytes / r : Number.POSITIVE_INFINITY;
    const atRisk = t.deadline !== undefined && now + eta * 1000 > t.deadline;
    out.set(t.id, { rateBps: r, etaSeconds: eta, atRisk });
  }
  return out;
}
