/**
 * The pure rules of the control-plane election (docs/operations.md "Running replicas"):
 * whether a replica may take or renew the lease row it just read, and until when a leader
 * may act on a renewal. leadership.ts runs them against the database; every rule is
 * unit-tested here case by case.
 *
 * Invariant: at most one replica acts as leader at any time, judged by the database's
 * clock for the lease and by the leader's own monotonic clock for acting. The leader stops
 * acting `marginMs` before the earliest moment its lease can expire (it counts from when it
 * *sent* the renewal, which is before the database stamped it), so another replica can only
 * take over after the old leader stopped — as long as the leader's process is not frozen
 * longer than the margin between two of its own timer checks (see leadership.ts).
 */

/** The lease row as the election reads it (under a row lock). */
export interface LeaseRow {
  /** The replica holding it; null once released. */
  holder: string | null;
  /** Bumped on every change of holder: a leader's term. */
  epoch: number;
  /** The holder's database session, when the database has sessions (PostgreSQL). */
  holderPid: number | null;
  /** Whether the database's clock says the lease has run out. */
  expired: boolean;
}

/** What this replica believes it is. */
export type Role = { kind: "follower" } | { kind: "leader"; epoch: number };

/** What the replica does with the lease row it read. */
export type ClaimDecision =
  /** Keep it: extend the lease, same epoch. */
  | { kind: "renew" }
  /** Take it: a new term (epoch + 1). */
  | { kind: "take"; reason: "free" | "expired" | "holder-gone" | "embedded" | "own-after-step-down" }
  /** Someone else leads; do nothing. */
  | { kind: "follow"; holder: string }
  /** This replica thought it led, but the row says otherwise: stop at once. */
  | { kind: "lost"; holder: string | null; reason: string };

/** Facts beyond the row. */
export interface ClaimContext {
  /** This replica's id. */
  self: string;
  /** What this replica believes it is now. */
  role: Role;
  /**
   * Whether the holder's database session still exists (undefined when unknown: the
   * embedded database, or a row without a session).
   */
  holderSessionAlive: boolean | undefined;
  /** The embedded database: one process owns it, so this process simply leads. */
  embedded: boolean;
}

/** Decides what to do with the lease row. */
export function claimDecision(row: LeaseRow, c: ClaimContext): ClaimDecision {
  if (c.role.kind === "leader") {
    if (row.holder === c.self && row.epoch === c.role.epoch) return { kind: "renew" };
    // Our term ended (someone took the row, or a step-down released it) while we still
    // believed we led: the only safe move is to stop now.
    return {
      kind: "lost",
      holder: row.holder,
      reason:
        row.holder === c.self
          ? `the lease is at epoch ${row.epoch}, not this leader's ${c.role.epoch}`
          : `replica ${row.holder ?? "(none)"} holds the lease at epoch ${row.epoch}`,
    };
  }
  if (c.embedded) return { kind: "take", reason: "embedded" };
  if (row.holder === null) return { kind: "take", reason: "free" };
  // Our own row from before we stepped down (a failed renewal): a new term, so that whatever
  // the previous term left running is told apart by its epoch.
  if (row.holder === c.self) return { kind: "take", reason: "own-after-step-down" };
  if (row.expired) return { kind: "take", reason: "expired" };
  if (row.holderPid !== null && c.holderSessionAlive === false)
    return { kind: "take", reason: "holder-gone" };
  return { kind: "follow", holder: row.holder };
}

/**
 * Until when (this process's monotonic clock, ms) a leader may act on a renewal it sent at
 * `sentAtMs`: the lease runs `ttlMs` from the database's stamp, which is no earlier than
 * the send, and the leader stops `marginMs` before that.
 */
export function actUntil(sentAtMs: number, ttlMs: number, marginMs: number): number {
  return sentAtMs + ttlMs - marginMs;
}

/** Election timing. */
export interface LeaseTiming {
  /** How long a lease lasts without renewal. @defaultValue 5000 */
  ttlMs: number;
  /** How often every replica runs an election tick (leader: renew; others: try to take). @defaultValue 1000 */
  renewEveryMs: number;
  /** How long before its lease could expire a leader stops acting. @defaultValue 1500 */
  marginMs: number;
}

/** The defaults: a crashed leader's lease is taken within one tick when its session is gone, else within ttl + tick. */
export const DEFAULT_LEASE_TIMING = {
  ttlMs: 5000,
  renewEveryMs: 1000,
  marginMs: 1500,
} as const satisfies LeaseTiming;

/** Checks timing that could let two leaders overlap or a healthy leader flap; returns the problem or undefined. */
export function leaseTimingProblem(t: LeaseTiming): string | undefined {
  if (!(t.renewEveryMs > 0 && t.ttlMs > 0 && t.marginMs >= 0)) return "all lease times must be positive";
  // A leader renews every tick and must get at least two chances before it stops acting.
  if (t.ttlMs - t.marginMs < 2 * t.renewEveryMs)
    return `the lease TTL (${t.ttlMs} ms) minus the safety margin (${t.marginMs} ms) must be at least two renewal intervals (${2 * t.renewEveryMs} ms)`;
  return undefined;
}
