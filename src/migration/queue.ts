/**
 * Which migrations the scheduler runs now: every active migration past `queued` that has
 * no runner (after a restart, or handed back by a runner), and the queued ones the limits
 * allow: each host runs at most `maxOutgoing` migrations out and `maxIncoming` in; the
 * rest wait in order of creation. Pure.
 */

/** The fields the decision needs. */
export interface QueuedOrActive {
  id: string;
  state: string;
  sourceHostId: string;
  /** Null for a migration to another cluster: its host there counts against that cluster's limits. */
  targetHostId: string | null;
  createdAt: string;
}

/** Per-host limits. */
export interface QueueLimits {
  maxOutgoing: number;
  maxIncoming: number;
}

/**
 * The queued migrations to start now, oldest first. A queued migration in `started` has
 * a runner that may not have recorded `preparing` yet: it counts as in flight.
 */
export function startable<M extends QueuedOrActive>(
  migrations: readonly M[],
  limits: QueueLimits,
  started: ReadonlySet<string> = new Set(),
): M[] {
  const waiting = (m: M) => m.state === "queued" && !started.has(m.id);
  const inFlight: QueuedOrActive[] = migrations.filter((m) => !waiting(m));
  const chosen: M[] = [];
  const queued = migrations.filter(waiting).sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  for (const m of queued) {
    const out = inFlight.filter((x) => x.sourceHostId === m.sourceHostId).length;
    const inc =
      m.targetHostId === null ? 0 : inFlight.filter((x) => x.targetHostId === m.targetHostId).length;
    if (out >= limits.maxOutgoing || inc >= limits.maxIncoming) continue;
    inFlight.push(m);
    chosen.push(m);
  }
  return chosen;
}

/**
 * The active migrations to start a runner for now, given the ids that have one
 * (`running`): those past `queued` without a runner, and the queued ones `startable`
 * allows. In the order of `active`.
 */
export function toRun<M extends QueuedOrActive>(
  active: readonly M[],
  running: ReadonlySet<string>,
  limits: QueueLimits,
): M[] {
  const start = new Set(startable(active, limits, running).map((m) => m.id));
  return active.filter((m) => !running.has(m.id) && (m.state !== "queued" || start.has(m.id)));
}
