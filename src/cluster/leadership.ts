/**
 * The control-plane election (docs/operations.md "Running replicas"): every server on one
 * database runs it; the one holding the lease row (SQL 000016) is the leader and runs the
 * controllers (server/controllers.ts), the others serve the API only. Each tick (every
 * `renewEveryMs`) a replica records that it is alive, locks the lease row, asks the pure
 * rules (leader-lease.ts) what to do and does it: the leader renews, the others take the
 * lease when it is free, has run out by the database's clock, or its holder's database
 * session is gone (a `kill -9`ed leader's socket is closed by the kernel, so PostgreSQL
 * drops its session at once: failover in about one tick instead of a whole TTL).
 *
 * A leader stops its controllers at once when a renewal fails (database unreachable, row
 * taken) and, through a timer, when it has not renewed by `actUntil` — the margin before its
 * lease could run out — so it has stopped before anyone else can take over.
 *
 * On PostgreSQL the election runs on its own connection (a stable session whose pid the
 * lease records), which also LISTENs on `nova_control_wake`: a follower that changed
 * something a controller must act on (a VM created, a migration requested, a heartbeat)
 * NOTIFYs it, and the leader wakes its loops at once instead of at their next interval. On
 * the embedded PGlite one process owns the database, so that process simply leads.
 */
import { performance } from "node:perf_hooks";
import type { Logger } from "pino";
import { describeError, NovaError } from "../lib/errors.js";
import { WakeableLoop } from "../lib/wakeable-loop.js";
import {
  actUntil,
  type ClaimDecision,
  claimDecision,
  DEFAULT_LEASE_TIMING,
  type LeaseTiming,
  leaseTimingProblem,
  type Role,
} from "./leader-lease.js";
import {
  lockLease,
  pruneReplicas,
  type ReplicaSelf,
  releaseLease,
  renewLease,
  takeLease,
  touchReplica,
} from "./store/control-plane.js";
import type { Queryable } from "./store/db.js";
import { appendEvent } from "./store/events.js";
import type { Store } from "./store/store.js";

/** The NOTIFY channel followers wake the leader's controllers on. */
export const CONTROL_WAKE_CHANNEL = "nova_control_wake";

/** Election options. */
export interface LeadershipOptions {
  store: Store;
  /** PostgreSQL URL for the election's own session; absent: the embedded database (this process leads). */
  databaseUrl?: string;
  /** This replica: its id (one per process start), and how it is reached (read each tick). */
  self: () => ReplicaSelf;
  /** Lease timing; unset fields take DEFAULT_LEASE_TIMING. */
  timing?: Partial<LeaseTiming>;
  log: Logger;
  /** This replica became leader at `epoch`: start the controllers. */
  onElected: (epoch: number) => Promise<void>;
  /** This replica stopped leading (`reason`): stop the controllers. */
  onDeposed: (reason: string) => Promise<void>;
  /** A follower changed something: wake the controllers (called on the leader only). */
  onWake?: () => void;
}

/** What this replica knows about the election now. */
export interface LeadershipStatus {
  replicaId: string;
  role: "leader" | "follower";
  /** This replica's term while it leads; else the last epoch it saw. */
  epoch: number;
  /** When this replica's current term began (database clock), while it leads. */
  since: string | null;
  /** The replica that led at this replica's last tick, if any. */
  leader: string | null;
  /** Terms this process has won, and lost, since it started. */
  elections: number;
  depositions: number;
}

/** A session the election runs its statements on. */
interface Session {
  pid: number | null;
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  close(): Promise<void>;
  broken: boolean;
}

type TickOutcome =
  | { kind: "renewed" }
  | { kind: "took"; epoch: number; acquiredAt: string; reason: string; previous: string | null }
  | { kind: "follow"; holder: string; epoch: number }
  | { kind: "lost"; reason: string };

/** Runs the election until stopped; see the module header. */
export class Leadership {
  private readonly timing: LeaseTiming;
  private readonly loop: WakeableLoop;
  private session: Session | undefined;
  private role: Role = { kind: "follower" };
  private since: string | null = null;
  private seenEpoch = 0;
  private seenLeader: string | null = null;
  private elections = 0;
  private depositions = 0;
  private deadline: NodeJS.Timeout | undefined;
  private validUntil = 0;
  private transitions: Promise<void> = Promise.resolve();
  private outage = false;
  private ticks = 0;
  private notifying = false;
  private notifyAgain = false;
  private stopped = false;

  constructor(private readonly o: LeadershipOptions) {
    this.timing = { ...DEFAULT_LEASE_TIMING, ...o.timing };
    const problem = leaseTimingProblem(this.timing);
    if (problem) throw new NovaError("NOVA_CONFIG", `Leader lease: ${problem}.`);
    this.loop = new WakeableLoop({
      pass: () => this.tick(),
      intervalMs: this.timing.renewEveryMs,
      onError: (err) => this.o.log.error({ err: describeError(err) }, "election tick failed"),
    });
  }

  /** The lease timing in force. */
  get leaseTiming(): LeaseTiming {
    return this.timing;
  }

  /** Runs the first tick (so a lone server leads before this returns), then ticks every interval. */
  async start(): Promise<void> {
    this.loop.start();
    await this.loop.current;
    await this.transitions;
  }

  /** Whether this replica leads now. */
  get isLeader(): boolean {
    return this.role.kind === "leader";
  }

  /** The election as this replica sees it. */
  status(): LeadershipStatus {
    return {
      replicaId: this.o.self().id,
      role: this.role.kind,
      epoch: this.role.kind === "leader" ? this.role.epoch : this.seenEpoch,
      since: this.role.kind === "leader" ? this.since : null,
      leader: this.role.kind === "leader" ? this.o.self().id : this.seenLeader,
      elections: this.elections,
      depositions: this.depositions,
    };
  }

  /**
   * A follower changed something a controller acts on: tell the leader (NOTIFY, coalesced:
   * one in flight, at most one more after it). Nothing to do on the leader or on PGlite.
   */
  wakeLeader(): void {
    if (this.role.kind === "leader" || !this.o.databaseUrl || this.stopped) return;
    if (this.notifying) {
      this.notifyAgain = true;
      return;
    }
    this.notifying = true;
    void this.o.store.db
      .query("SELECT pg_notify($1, $2)", [CONTROL_WAKE_CHANNEL, this.o.self().id])
      .catch(() => {
        // The leader's loops run on their interval anyway; a lost wake only delays.
      })
      .finally(() => {
        this.notifying = false;
        if (this.notifyAgain) {
          this.notifyAgain = false;
          this.wakeLeader();
        }
      });
  }

  /** Stops: a leader stops its controllers, then releases the lease so another replica takes it at its next tick. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop.stop();
    const role = this.role;
    if (role.kind === "leader") {
      this.depose("this server is shutting down");
      await this.transitions;
      try {
        const session = await this.openSession();
        await session.transaction((tx) => releaseLease(tx, this.o.self().id, role.epoch));
        this.o.log.info({ epoch: role.epoch }, "released the leader lease");
      } catch (err) {
        this.o.log.warn(
          { err: describeError(err) },
          "could not release the leader lease; it runs out by itself",
        );
      }
    }
    await this.transitions;
    clearTimeout(this.deadline);
    await this.session?.close().catch(() => {});
    this.session = undefined;
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    // A leader frozen past its deadline (a long pause) must not act on the pass it resumes in.
    if (this.role.kind === "leader" && performance.now() >= this.validUntil)
      this.depose("the lease was not renewed in time");
    const sentAt = performance.now();
    let outcome: TickOutcome;
    try {
      const session = await this.openSession();
      outcome = await session.transaction(async (tx) => {
        const self = this.o.self();
        await touchReplica(tx, self);
        if (this.role.kind === "leader" && ++this.ticks % 600 === 0) await pruneReplicas(tx);
        const { row, holderSessionAlive } = await lockLease(tx, session.pid !== null);
        const d: ClaimDecision = claimDecision(row, {
          self: self.id,
          role: this.role,
          holderSessionAlive,
          embedded: !this.o.databaseUrl,
        });
        switch (d.kind) {
          case "renew":
            return (await renewLease(tx, self.id, row.epoch, this.timing.ttlMs, session.pid))
              ? { kind: "renewed" as const }
              : { kind: "lost" as const, reason: "the lease row moved while renewing" };
          case "lost":
            return { kind: "lost" as const, reason: d.reason };
          case "follow":
            return { kind: "follow" as const, holder: d.holder, epoch: row.epoch };
          case "take": {
            const term = await takeLease(tx, self.id, row.epoch, this.timing.ttlMs, session.pid);
            if (!term) return { kind: "follow" as const, holder: row.holder ?? "", epoch: row.epoch };
            return { kind: "took" as const, ...term, reason: d.reason, previous: row.holder };
          }
        }
      });
    } catch (err) {
      this.dropSession();
      if (this.role.kind === "leader") this.depose(`cannot renew the leader lease: ${describeError(err)}`);
      if (!this.outage)
        this.o.log.warn({ err: describeError(err) }, "election tick failed; will keep trying");
      this.outage = true;
      return;
    }
    if (this.outage) this.o.log.info("election reaches the database again");
    this.outage = false;
    switch (outcome.kind) {
      case "renewed":
        this.keepActingUntil(actUntil(sentAt, this.timing.ttlMs, this.timing.marginMs));
        return;
      case "lost":
        this.depose(outcome.reason);
        return;
      case "follow":
        this.seenLeader = outcome.holder || null;
        this.seenEpoch = outcome.epoch;
        return;
      case "took":
        await this.elected(outcome, sentAt);
        return;
    }
  }

  private async elected(t: Extract<TickOutcome, { kind: "took" }>, sentAt: number): Promise<void> {
    const self = this.o.self();
    this.role = { kind: "leader", epoch: t.epoch };
    this.since = t.acquiredAt;
    this.seenEpoch = t.epoch;
    this.seenLeader = self.id;
    this.elections++;
    this.keepActingUntil(actUntil(sentAt, this.timing.ttlMs, this.timing.marginMs));
    this.o.log.info(
      { epoch: t.epoch, reason: t.reason, previous: t.previous, replica: self.id },
      "this server is now the control-plane leader",
    );
    // The event is for people (GET /v1/events, the console); the lease row is the truth.
    await this.o.store
      .write(async (tx, emit) =>
        emit(
          await appendEvent(tx, {
            type: "control-plane.leader",
            resourceType: "control-plane",
            resourceId: self.id,
            data: {
              replica: self.id,
              apiUrl: self.apiUrl,
              epoch: t.epoch,
              previous: t.previous,
              reason: t.reason,
            },
          }),
        ),
      )
      .catch((err) => this.o.log.warn({ err: describeError(err) }, "could not record the leader event"));
    const epoch = t.epoch;
    this.transitions = this.transitions.then(async () => {
      // Deposed again before the controllers started: leave them stopped.
      if (this.role.kind !== "leader" || this.role.epoch !== epoch) return;
      await this.o.onElected(epoch).catch((err) => {
        this.o.log.error({ err: describeError(err) }, "starting the controllers failed");
      });
    });
    // Not awaited: the next ticks must renew while a previous term's controllers still stop.
  }

  /** Stops leading now (controllers stop in the background; a new term waits for that). */
  private depose(reason: string): void {
    if (this.role.kind !== "leader") return;
    const epoch = this.role.epoch;
    this.role = { kind: "follower" };
    this.since = null;
    this.depositions++;
    clearTimeout(this.deadline);
    this.o.log.warn({ epoch, reason }, "this server stopped being the control-plane leader");
    this.transitions = this.transitions.then(() =>
      this.o.onDeposed(reason).catch((err) => {
        this.o.log.error({ err: describeError(err) }, "stopping the controllers failed");
      }),
    );
  }

  private keepActingUntil(until: number): void {
    this.validUntil = until;
    clearTimeout(this.deadline);
    this.deadline = setTimeout(
      () => {
        if (this.role.kind === "leader" && performance.now() >= this.validUntil)
          this.depose("the lease was not renewed in time");
      },
      Math.max(0, until - performance.now()),
    );
    this.deadline.unref();
  }

  private dropSession(): void {
    const s = this.session;
    this.session = undefined;
    if (s && this.o.databaseUrl) void s.close().catch(() => {});
  }

  private async openSession(): Promise<Session> {
    if (this.session && !this.session.broken) return this.session;
    this.dropSession();
    this.session = this.o.databaseUrl
      ? await this.postgresSession(this.o.databaseUrl)
      : this.embeddedSession();
    return this.session;
  }

  private embeddedSession(): Session {
    const db = this.o.store.db;
    return { pid: null, broken: false, transaction: (fn) => db.transaction(fn), close: async () => {} };
  }

  private async postgresSession(url: string): Promise<Session> {
    const pg = (await import("pg")).default;
    // Bounded: a tick must fail (and a leader step down) well within the lease, not hang
    // on a partitioned database until TCP gives up.
    const bound = Math.max(500, this.timing.ttlMs - this.timing.marginMs - this.timing.renewEveryMs);
    const client = new pg.Client({
      connectionString: url,
      connectionTimeoutMillis: bound,
      query_timeout: bound,
      keepAlive: true,
      application_name: "novacron-election",
    });
    const session: Session = {
      pid: null,
      broken: false,
      transaction: async (fn) => {
        const q = (sql: string, params?: unknown[]) =>
          client.query(sql, params).then((r) => ({ rows: r.rows, rowCount: r.rowCount ?? 0 }));
        const tx = { query: q } as unknown as Queryable;
        await client.query("BEGIN");
        try {
          const result = await fn(tx);
          await client.query("COMMIT");
          return result;
        } catch (err) {
          await client.query("ROLLBACK").catch(() => {
            session.broken = true;
          });
          throw err;
        }
      },
      close: () => client.end(),
    };
    client.on("error", () => {
      session.broken = true;
    });
    client.on("notification", (msg) => {
      if (msg.channel === CONTROL_WAKE_CHANNEL && this.role.kind === "leader") this.o.onWake?.();
    });
    try {
      await client.connect();
      const { rows } = await client.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
      session.pid = rows[0]!.pid;
      await client.query(`LISTEN ${CONTROL_WAKE_CHANNEL}`);
    } catch (err) {
      await client.end().catch(() => {});
      throw err;
    }
    return session;
  }
}
