/**
 * Which queued migrations may start now: each host runs at most `maxOutgoing` migrations
 * out and `maxIncoming` in; the rest wait in order of creation. Pure.
 */

/** The fields the decision needs. */
export interface QueuedOrActive {
  id: string;
  state: string;
  sourceHostId: string;
  targetHostId: string;
  createdAt: string;
}

/** The queued migrations to start now, oldest first. */
export function startable(
  migrations: readonly QueuedOrActive[],
  limits: { maxOutgoing: number; maxIncoming: number },
): QueuedOrActive[] {
  const inFlight = migrations.filter((m) => m.state !== "queued");
  const chosen: QueuedOrActive[] = [];
  const queued = migrations
    .filter((m) => m.state === "queued")
    .sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  for (const m of queued) {
    const out = inFlight.filter((x) => x.sourceHostId === m.sourceHostId).length;
    const inc = inFlight.filter((x) => x.targetHostId === m.targetHostId).length;
    if (out >= limits.maxOutgoing || inc >= limits.maxIncoming) continue;
    inFlight.push(m);
    chosen.push(m);
  }
  return chosen;
}
