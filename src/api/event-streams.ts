/**
 * The open event (SSE) streams of this server: a cap per principal (a token, or a user's
 * login session) and in total,
 * and revocation that closes a principal's streams at once. The token routes call
 * `revoke` after a revocation commits; a stream also re-checks its token on every
 * heartbeat (events.ts), which catches a revocation made elsewhere (another server
 * process on the same database, a removed host).
 */
import type { LimitName } from "./limits.js";

/** One open stream's handle. */
export interface StreamSlot {
  /** Frees the slot (the stream ended). Idempotent. */
  release(): void;
}

/** Open streams by principal. */
export class EventStreams {
  private readonly byPrincipal = new Map<string, Set<(reason: string) => void>>();
  private total = 0;

  constructor(private readonly limits: { sseStreamsPerToken: number; sseStreamsTotal: number }) {}

  /**
   * Takes a slot for a stream of `principalId`; `close` ends that stream (on revocation).
   * Returns the limit that refuses it when the principal or the server is at its cap.
   */
  open(principalId: string, close: (reason: string) => void): StreamSlot | LimitName {
    const mine = this.byPrincipal.get(principalId) ?? new Set();
    if (mine.size >= this.limits.sseStreamsPerToken) return "sse-per-token";
    if (this.total >= this.limits.sseStreamsTotal) return "sse-total";
    mine.add(close);
    this.byPrincipal.set(principalId, mine);
    this.total++;
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.total--;
        mine.delete(close);
        if (mine.size === 0 && this.byPrincipal.get(principalId) === mine)
          this.byPrincipal.delete(principalId);
      },
    };
  }

  /** Closes every open stream of `principalId` (its token was revoked, its session ended); returns how many. */
  revoke(principalId: string, reason = "token revoked"): number {
    const mine = [...(this.byPrincipal.get(principalId) ?? [])];
    for (const close of mine) close(reason);
    return mine.length;
  }

  /** Closes every open stream (the server is shutting down: an open stream would hold its close). */
  closeAll(reason: string): number {
    const all = [...this.byPrincipal.values()].flatMap((mine) => [...mine]);
    for (const close of all) close(reason);
    return all.length;
  }

  /** Open streams of `principalId`, or in total when omitted. */
  count(principalId?: string): number {
    return principalId === undefined ? this.total : (this.byPrincipal.get(principalId)?.size ?? 0);
  }
}
