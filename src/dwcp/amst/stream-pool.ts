/**
 * The connections of one AMST session (docs/dwcp.md §4.1, §4.4, §4.5): the live set,
 * which connections drain, how many there should be, dialing more and replacing lost
 * ones (dialer only), and the deadline for a session left with none. The session decides
 * what to write where and what a lost connection means for it; the pool keeps the set.
 *
 * Its state changes are guarded, so a late event cannot revive a finished pool:
 *   - the pool runs until `shutDown()`, then for good: a connection handed to it later is
 *     destroyed, it no longer dials, redials or arms the orphan deadline;
 *   - a connection moves only forward: live → draining (no new frames; ended once
 *     nothing it carried is unacknowledged) → gone (left the pool when its socket closed,
 *     its written bytes kept in the total);
 *   - the target count is at least 1 and only the dialer's `setTarget` changes it.
 */
import type { Socket } from "node:net";
import type { Frame } from "../wire/frame.js";
import { Connection, type ConnectionLimits } from "./connection.js";

/** What the pool needs from its session. */
export interface StreamPoolOptions {
  /** Largest frame payload a new connection's decoder accepts. */
  maxPayload: number;
  /** Per-connection user-space queue (bytes) above which no more frames go to it. */
  connectionHighWater: number;
  /** How long the pool may be without connections, and how long a redial round lasts (ms). */
  reconnectTimeoutMs: number;
  /** Dialer only: opens one more handshaken connection (JOIN). Without it the pool never dials. */
  redial?: (() => Promise<{ socket: Socket; rest: Buffer }>) | undefined;
  /** Bytes written on `conn` that the peer has not acknowledged (the session's send window). */
  inflightOn(conn: Connection): number;
  /** Bounds on each connection's send queue and the peer's PINGs. @defaultValue DEFAULT_CONNECTION_LIMITS */
  limits?: ConnectionLimits;
}

/** Callbacks from the pool to its session. */
export interface StreamPoolEvents {
  /** A frame arrived on `conn`. */
  frame(conn: Connection, frame: Frame): void;
  /** A connection joined the pool (handed in, or redialed by the pool). */
  added(conn: Connection): void;
  /** A connection ended; it has already left the pool. Called once per connection. */
  closed(conn: Connection, err: Error | null): void;
  /** A connection's socket has room again. */
  drain(): void;
  /** The last connection was lost and none came back within reconnectTimeoutMs. */
  orphaned(): void;
}

/** The connection set of one session. */
export class StreamPool {
  private readonly conns = new Set<Connection>();
  private running = true;
  private target = 1;
  private redialing = 0;
  private writtenByGone = 0;
  private replaced = 0;
  private orphanTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly opts: StreamPoolOptions,
    private readonly events: StreamPoolEvents,
  ) {}

  /** Number of connections in the pool (draining ones included). */
  get size(): number {
    return this.conns.size;
  }

  /** False once `shutDown()` ran. */
  get isRunning(): boolean {
    return this.running;
  }

  /** How many connections should be live (not draining). */
  get targetCount(): number {
    return this.target;
  }

  /** Connections lost (not retired by draining) and thus replaced or waited for. */
  get connectionsReplaced(): number {
    return this.replaced;
  }

  /** Bytes written to every connection the pool ever held, headers included. */
  get bytesWritten(): number {
    let written = this.writtenByGone;
    for (const c of this.conns) written += c.bytesWritten;
    return written;
  }

  /** The connections, draining ones included. */
  [Symbol.iterator](): IterableIterator<Connection> {
    return this.conns.values();
  }

  /** The connections' sockets. */
  sockets(): Socket[] {
    return [...this.conns].map((c) => c.socket);
  }

  /** The connection with this id, if it is still in the pool. */
  byId(id: number): Connection | undefined {
    for (const c of this.conns) if (c.id === id) return c;
    return undefined;
  }

  /** Live connections that take new frames. */
  sending(): Connection[] {
    return [...this.conns].filter((c) => c.alive && !c.draining);
  }

  /**
   * Where the next sequenced frame goes (§4.1): the live, non-draining connection with the
   * fewest bytes in flight, skipping those over their in-flight cap or queue high water.
   */
  pickForSend(rttMs: number): Connection | null {
    let best: Connection | null = null;
    for (const c of this.conns) {
      if (!c.alive || c.draining) continue;
      if (c.queuedBytes >= this.opts.connectionHighWater) continue;
      if (c.inflight >= c.sendCap(rttMs)) continue;
      if (best === null || c.inflight < best.inflight) best = c;
    }
    return best;
  }

  /** The live connection with the shortest user-space queue (for ACK, PING, CREDIT). */
  leastQueued(): Connection | null {
    let best: Connection | null = null;
    for (const c of this.conns) {
      if (!c.alive) continue;
      if (best === null || c.queuedBytes < best.queuedBytes) best = c;
    }
    return best;
  }

  /**
   * Adds a handshaken connection (the first one, a JOIN, or a redial) and reports it with
   * `added`. After shutDown the socket is destroyed instead and null returned.
   */
  add(socket: Socket, rest: Buffer): Connection | null {
    if (!this.running) {
      socket.destroy();
      return null;
    }
    const conn = new Connection(
      socket,
      this.opts.maxPayload,
      {
        frame: (c, f) => this.events.frame(c, f),
        closed: (c, err) => this.onClosed(c, err),
        drain: () => this.events.drain(),
      },
      rest,
      this.opts.limits,
    );
    this.conns.add(conn);
    if (this.orphanTimer) {
      clearTimeout(this.orphanTimer);
      this.orphanTimer = null;
    }
    this.events.added(conn);
    return conn;
  }

  /**
   * Dialer only: keep `n` live connections (at least 1). More are dialed at once; surplus
   * ones drain and end when all they carry is acknowledged.
   */
  async setTarget(n: number): Promise<void> {
    if (!this.opts.redial || !this.running) return;
    this.target = Math.max(1, Math.floor(n));
    const active = [...this.conns].filter((c) => !c.draining);
    if (active.length > this.target) {
      for (const c of active.slice(this.target)) this.startDraining(c);
      return;
    }
    const missing = this.target - active.length - this.redialing;
    await Promise.all(Array.from({ length: Math.max(0, missing) }, () => this.dialOne()));
  }

  /** Ends each draining connection that has nothing unacknowledged or queued any more. */
  retireIdle(): void {
    for (const c of this.conns) if (c.draining) this.retireIfIdle(c);
  }

  /**
   * After the session took back what a lost connection carried: counts the loss (a
   * draining connection is not lost, it was retiring), redials toward the target when
   * the pool can dial, and starts the orphan deadline when no connection is left.
   */
  replaceLost(conn: Connection): void {
    if (!this.running || this.conns.has(conn)) return;
    if (!conn.draining) {
      this.replaced++;
      if (this.opts.redial) void this.restore();
    }
    if (this.conns.size === 0 && !this.orphanTimer) {
      this.orphanTimer = setTimeout(() => {
        this.orphanTimer = null;
        if (this.conns.size === 0) this.events.orphaned();
      }, this.opts.reconnectTimeoutMs);
      this.orphanTimer.unref();
    }
  }

  /**
   * Stops the pool for good and ends its connections: `end` flushes what is queued first
   * (the ERROR or the last ACK), `destroy` closes at once. Either way every socket is
   * destroyed after a second at the latest.
   */
  shutDown(how: "end" | "destroy"): void {
    this.running = false;
    if (this.orphanTimer) {
      clearTimeout(this.orphanTimer);
      this.orphanTimer = null;
    }
    for (const c of [...this.conns]) {
      if (how === "end") c.end();
      else c.destroy();
      setTimeout(() => c.destroy(), 1000).unref();
    }
  }

  private onClosed(conn: Connection, err: Error | null): void {
    if (!this.conns.delete(conn)) return;
    this.writtenByGone += conn.bytesWritten;
    this.events.closed(conn, err);
  }

  private startDraining(conn: Connection): void {
    if (conn.draining || !this.conns.has(conn)) return;
    conn.draining = true;
    this.retireIfIdle(conn);
  }

  private retireIfIdle(conn: Connection): void {
    if (conn.draining && this.opts.inflightOn(conn) === 0 && conn.queuedBytes === 0) conn.end();
  }

  /** Redials (backoff 50 ms … 1 s, for reconnectTimeoutMs) until the target is live again. */
  private async restore(): Promise<void> {
    const deadline = performance.now() + this.opts.reconnectTimeoutMs;
    let delay = 50;
    while (this.running) {
      const active = [...this.conns].filter((c) => !c.draining).length;
      if (active + this.redialing >= this.target) return;
      if (await this.dialOne()) continue;
      if (performance.now() > deadline) return;
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 1000);
    }
  }

  private async dialOne(): Promise<boolean> {
    const redial = this.opts.redial;
    if (!redial) return false;
    this.redialing++;
    try {
      const { socket, rest } = await redial();
      this.add(socket, rest);
      return true;
    } catch {
      return false;
    } finally {
      this.redialing--;
    }
  }
}
