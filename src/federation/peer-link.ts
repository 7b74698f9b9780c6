/**
 * The link to one peer (docs/federation.md §4): dials the peer's ASS listener over DWCP
 * with mutual TLS (its pinned CA, our server certificate), says hello, and pulls in a
 * loop: each pull carries our vector, each answer is applied by the receiver in one
 * transaction. An answer that was cut short is followed by an immediate pull; otherwise
 * the next pull waits at the peer (long-poll) up to the heartbeat. Any failure drops the
 * session and dials again after a backoff, so a healed partition resumes from the vector
 * the database holds: nothing is lost and nothing is taken twice.
 */
import type { Logger } from "pino";
import {
  getPeerById,
  notePeerContact,
  type PeerRow,
  readClusterIdentity,
  readVector,
} from "../cluster/store/federation.js";
import type { Store } from "../cluster/store/store.js";
import type { DwcpSession } from "../dwcp/amst/session.js";
import { describeError, NovaError } from "../lib/errors.js";
import { withDeadline } from "../lib/wait.js";
import { ASS_CHANNEL, readBatch, send } from "./ass-wire.js";
import type { Changes } from "./changes.js";
import { type DialSelf, dialPeer } from "./peer-dial.js";
import { applyBatch, type BatchOutcome, type Roster, type Violation } from "./receiver.js";
import type { VersionVector } from "./version-vector.js";

/** What a link needs. */
export interface PeerLinkDeps extends DialSelf {
  store: Store;
  roster: () => Promise<Roster>;
  changes: Changes;
  log: Logger;
  /** How long a pull may wait at the peer for something new. */
  heartbeatMs: number;
  /** Told after every applied batch and about every violation found. */
  onBatch?: (peer: string, outcome: BatchOutcome, bytes: number) => void;
  onViolation?: (v: Violation) => void;
}

const BACKOFF_MS = [250, 500, 1000, 2000, 4000] as const;

/** Pulls from one peer until stopped. */
export class PeerLink {
  private stopped = false;
  private session: DwcpSession | undefined;
  private readonly done: Promise<void>;
  private sleeper: { timer: NodeJS.Timeout; resolve: () => void } | undefined;

  constructor(
    readonly peer: PeerRow,
    private readonly deps: PeerLinkDeps,
  ) {
    this.done = this.run();
  }

  /** Stops pulling and drops the session. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.session?.destroy(new NovaError("NOVA_DWCP_CLOSED", "federation link stopped"));
    if (this.sleeper) {
      clearTimeout(this.sleeper.timer);
      this.sleeper.resolve();
    }
    await this.done;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.sleeper = { timer: setTimeout(resolve, ms), resolve };
    });
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      try {
        const quit = await this.exchange(() => {
          failures = 0;
        });
        if (quit) return;
      } catch (err) {
        if (this.stopped) return;
        const message = describeError(err);
        this.deps.log.debug({ peer: this.peer.name, err: message }, "federation link failed; will retry");
        await notePeerContact(this.deps.store.db, this.peer.id, { ok: false, error: message }).catch(
          () => {},
        );
        if (
          err instanceof NovaError &&
          (err.code === "NOVA_FED_QUARANTINED" || err.code === "NOVA_FED_PROTOCOL")
        ) {
          // The peer refuses us or speaks another protocol: retrying soon will not help.
          failures = BACKOFF_MS.length - 1;
        }
      } finally {
        this.session?.destroy();
        this.session = undefined;
      }
      if (this.stopped) return;
      await this.sleep(BACKOFF_MS[Math.min(failures++, BACKOFF_MS.length - 1)]!);
    }
  }

  /** One session: hello, then pulls until something fails. True when the link must end for good. */
  private async exchange(connected: () => void): Promise<boolean> {
    // Fresh each time: the peer may have moved (its signed cluster record says where to).
    const p = await getPeerById(this.deps.store.read, this.peer.id);
    if (!p) return true;
    const { channel: ch } = await dialPeer(p, this.deps, ASS_CHANNEL, (session) => {
      this.session = session;
    });
    if (this.stopped) return true;
    let waitMs = 0;
    while (!this.stopped) {
      const roster = await this.deps.roster();
      if (!roster.keys.has(p.id)) return true; // quarantined or removed meanwhile
      const vector = await this.askVector(roster, p.id);
      await send(ch, { type: "pull", vector, waitMs });
      const batch = await this.bounded(readBatch(ch), waitMs + 15_000, "batch");
      const outcome = await applyBatch(this.deps.store, roster, p.id, vector, batch, this.deps.onViolation);
      await notePeerContact(this.deps.store.db, p.id, { ok: true, peerSeq: batch.seq });
      this.deps.onBatch?.(p.id, outcome, Buffer.byteLength(JSON.stringify(batch)));
      connected();
      if (outcome.accepted > 0) this.deps.changes.signal();
      if (outcome.violations.some((v) => v.culprit === p.id)) return true;
      waitMs = batch.truncated ? 0 : this.deps.heartbeatMs;
    }
    return true;
  }

  /**
   * Our vector for the origins we ask this peer about: us, the peer itself, and every other
   * active peer we do not hear from directly right now. A peer we are in contact with
   * sends us its own records; asking everyone for them too would carry each change
   * (N-1)^2 times across the WAN instead of N-1 (docs/benchmarks.md, "Federation").
   */
  private async askVector(roster: Roster, answerer: string): Promise<VersionVector> {
    const held = await readVector(this.deps.store.read);
    const own = await readClusterIdentity(this.deps.store.read);
    const vector: VersionVector = {};
    for (const origin of roster.keys.keys()) {
      if (origin !== roster.self && origin !== answerer && roster.direct.has(origin)) continue;
      vector[origin] = origin === roster.self ? own.seq : (held[origin] ?? 0);
    }
    return vector;
  }

  private bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
    return withDeadline(
      p,
      ms,
      () => new NovaError("NOVA_FED_PEER_UNREACHABLE", `${this.peer.name} sent no ${what} within ${ms} ms`),
    );
  }
}
