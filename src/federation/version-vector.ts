/**
 * Version vectors for ASS anti-entropy (docs/federation.md §3). Each cluster is the only
 * writer of its records, so one number per origin says how much of that origin's history
 * a cluster holds: vector[o] = n means "I hold the state of every record of o as of o's
 * write n". A pull sends the vector; the answer holds every record with a greater version,
 * ordered by (origin, version) and cut at a bound.
 */

/** Origin cluster id → highest version held in full. */
export type VersionVector = Record<string, number>;

/** The record sort the wire uses: origin, then version. */
export function compareKeys(
  a: { origin: string; version: number },
  b: { origin: string; version: number },
): number {
  if (a.origin !== b.origin) return a.origin < b.origin ? -1 : 1;
  return a.version - b.version;
}

/**
 * What the receiver may claim after an answer to `asked`: an origin the answer covered in
 * full moves to the sender's vector, the origin it was cut in moves to the last version
 * received, the origins after the cut stay. Never lowers an entry.
 */
export function advanceVector(
  asked: VersionVector,
  senderVector: VersionVector,
  records: readonly { origin: string; version: number }[],
  truncated: boolean,
): VersionVector {
  const next: VersionVector = { ...asked };
  const last = records.at(-1);
  for (const origin of Object.keys(asked)) {
    const theirs = senderVector[origin] ?? 0;
    let claim: number;
    if (!truncated || !last) claim = theirs;
    else if (origin < last.origin) claim = theirs;
    else if (origin === last.origin) claim = Math.min(theirs, last.version);
    else continue;
    if (claim > (next[origin] ?? 0)) next[origin] = claim;
  }
  return next;
}

/** How many of `origin`'s writes `mine` lacks compared with `theirs` (never negative). */
export function lagOf(mine: VersionVector, theirs: VersionVector, origin: string): number {
  return Math.max(0, (theirs[origin] ?? 0) - (mine[origin] ?? 0));
}
