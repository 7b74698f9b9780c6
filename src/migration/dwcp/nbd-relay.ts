/**
 * The disk half of a migration over DWCP (docs/migration-stream.md, "NBD relay"): the
 * source QEMU's block mirror connects to a local listener instead of the destination's
 * NBD export; each connection becomes one relay `<label>/<n>` (control and HDE page
 * channels, as for the memory stream) whose write payloads are split into pages
 * (nbd-splitter.ts) and deduplicated against the destination's page cache; on the
 * destination each such relay connects to the export and rebuilds the client's bytes in
 * order, verified end to end (byte count and SHA-256) before the connection closes.
 * The server's replies travel back verbatim, except the replies to flushes, which the
 * source answers at once and the destination confirms (nbd-local-answers.ts,
 * nbd-reply-gate.ts): a flush then costs no round trip, and the destination's relay
 * reports a connection finished only once its export answered those flushes too.
 */
import type { Server, Socket } from "node:net";
import type { ChannelPriority } from "../../dwcp/amst/send-window.js";
import type { DwcpSession } from "../../dwcp/amst/session.js";
import type { PageHistory } from "../../dwcp/hde/history.js";
import type { PageCache } from "../../dwcp/hde/page-cache.js";
import type { ReceiverMirror } from "../../dwcp/hde/receiver-mirror.js";
import type { ChannelRouter } from "./channel-router.js";
import { NbdLocalAnswers } from "./nbd-local-answers.js";
import { NbdReplyGate } from "./nbd-reply-gate.js";
import { NbdRequestSplitter } from "./nbd-splitter.js";
import { MigrationRelaySource, type RelayStats } from "./relay-source.js";
import { MigrationRelayTarget } from "./relay-target.js";
import { type LocalEndpoint, listenLocal, qemuUri } from "./socket-io.js";

/** Source options. */
export interface NbdRelaySourceOptions {
  session: DwcpSession;
  /** @defaultValue "nbd" */
  label?: string;
  listen?: LocalEndpoint;
  /** Last-sent disk blocks (page number = offset / 4096), for deltas; null disables them. */
  history?: PageHistory | null;
  /** Shared mirror of the destination's cache (the target must use `announce: false`). */
  mirror?: ReceiverMirror;
  /** zstd level (0 = off). @defaultValue 1 */
  level?: number;
  /**
   * Client bytes not yet written into the export. The mirror's own requests bound what is
   * in flight; this only keeps a fast reader from buffering a whole disk. @defaultValue 16 MiB
   */
  maxInFlightBytes?: number;
  /** Send class of the relays' channels (docs/dwcp.md §4.6). @defaultValue "normal" */
  priority?: ChannelPriority;
  /**
   * Answer the mirror's flushes here, confirmed later by the destination's export
   * (nbd-local-answers.ts); false sends every flush across and waits. @defaultValue true
   */
  answerFlushes?: boolean;
}

/** Source side: a local NBD endpoint whose connections are relayed over the session. */
export class NbdRelaySource {
  private server: Server | null = null;
  private endpointValue: LocalEndpoint | null = null;
  private readonly relays: { relay: MigrationRelaySource; answers: NbdLocalAnswers | null }[] = [];
  private readonly pending = new Set<Promise<unknown>>();
  private connections = 0;
  private lastError: Error | null = null;

  private constructor(private readonly o: NbdRelaySourceOptions) {}

  static async start(o: NbdRelaySourceOptions): Promise<NbdRelaySource> {
    const r = new NbdRelaySource(o);
    const { server, endpoint } = await listenLocal(o.listen ?? { port: 0 }, (s) => r.onConnection(s));
    r.server = server;
    r.endpointValue = endpoint;
    return r;
  }

  get endpoint(): LocalEndpoint {
    return this.endpointValue!;
  }

  /** e.g. for QEMU's NBD client: "tcp:127.0.0.1:PORT". */
  get uri(): string {
    return qemuUri(this.endpointValue!);
  }

  /** The first error of any connection, if one failed. */
  get error(): Error | null {
    return this.lastError;
  }

  /**
   * Counters summed over every connection so far; `fallbacks` holds why a connection's
   * splitter stopped interpreting (its writes then travel verbatim, still correct).
   */
  stats(): Pick<RelayStats, "logicalBytes" | "wireBytes" | "pages"> & {
    connections: number;
    fallbacks: string[];
    /** Flushes answered here, and of those the ones the destination's export confirmed. */
    flushes: { answered: number; confirmed: number };
  } {
    const sum = {
      connections: this.connections,
      logicalBytes: 0,
      wireBytes: 0,
      pages: { total: 0, zero: 0, ref: 0, delta: 0, full: 0 },
      fallbacks: [] as string[],
      flushes: { answered: 0, confirmed: 0 },
    };
    for (const { relay: r, answers } of this.relays) {
      sum.flushes.answered += answers?.stats.answered ?? 0;
      sum.flushes.confirmed += answers?.stats.confirmed ?? 0;
      const s = r.stats();
      if (s.parserMode === "fallback") sum.fallbacks.push(s.parserReason ?? "fallback");
      sum.logicalBytes += s.logicalBytes;
      sum.wireBytes += s.wireBytes;
      for (const k of ["total", "zero", "ref", "delta", "full"] as const) sum.pages[k] += s.pages[k];
    }
    return sum;
  }

  private onConnection(s: Socket): void {
    const label = `${this.o.label ?? "nbd"}/${this.connections++}`;
    const answers = this.o.answerFlushes === false ? null : new NbdLocalAnswers();
    // The socket stays paused (no data listener) until the relay's channels are open.
    const p = MigrationRelaySource.open({
      session: this.o.session,
      label,
      history: this.o.history ?? null,
      level: this.o.level ?? 1,
      maxInFlightBytes: this.o.maxInFlightBytes ?? 16 * 1024 * 1024,
      splitter: new NbdRequestSplitter(answers ? (r) => answers.onRequest(r) : undefined),
      ...(answers ? { returnPath: answers } : {}),
      ...(this.o.mirror ? { mirror: this.o.mirror } : {}),
      ...(this.o.priority ? { priority: this.o.priority } : {}),
    }).then(
      (relay) => {
        this.relays.push({ relay, answers });
        relay.attach(s);
        return relay.done;
      },
      (err: unknown) => {
        s.destroy();
        throw err;
      },
    );
    const tracked = p.catch((err: unknown) => {
      this.lastError ??= err instanceof Error ? err : new Error(String(err));
    });
    this.pending.add(tracked);
    void tracked.finally(() => this.pending.delete(tracked));
  }

  /** Stops listening and waits for open connections to finish (or fail). */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    await Promise.all(this.pending);
  }

  /** Fails every connection (the mirror then fails; the source disk is untouched). */
  abort(reason: string): void {
    for (const { relay } of this.relays) relay.abort(reason);
    this.server?.close();
  }
}

/** Destination options. */
export interface NbdRelayTargetOptions {
  router: ChannelRouter;
  /** @defaultValue "nbd" */
  label?: string;
  /** The destination QEMU's NBD export (a promise: known only once the export moved). */
  target: LocalEndpoint | Promise<LocalEndpoint>;
  cache: PageCache | null;
  /** Records received disk blocks as this host's last version (for a later way back). */
  history?: PageHistory | null;
  /** false when the source shares a mirror read on another channel. @defaultValue true */
  announce?: boolean;
}

/** Destination side: rebuilds every `<label>/<n>` connection into the NBD export. */
export class NbdRelayTarget {
  private readonly relays: MigrationRelayTarget[] = [];
  private lastError: Error | null = null;

  constructor(o: NbdRelayTargetOptions) {
    const prefix = `${o.label ?? "nbd"}/`;
    o.router.onPrefix(prefix, (ch) => {
      // Pages channels wait in the router until their control channel's relay takes them.
      if (!ch.label.endsWith("/ctl")) return false;
      const relay = new MigrationRelayTarget({
        router: o.router,
        label: ch.label.slice(0, -"/ctl".length),
        ctl: ch,
        qemu: o.target,
        cache: o.cache,
        history: o.history ?? null,
        announce: o.announce ?? true,
        // The NBD server speaks first (its greeting).
        connectAtStart: true,
        gate: new NbdReplyGate(),
      });
      relay.done.catch((err: unknown) => {
        this.lastError ??= err instanceof Error ? err : new Error(String(err));
      });
      this.relays.push(relay);
      return true;
    });
  }

  /** The first error of any connection, if one failed. */
  get error(): Error | null {
    return this.lastError;
  }

  /** Waits for the connections so far to finish (or fail). */
  async idle(): Promise<void> {
    await Promise.all(this.relays.map((r) => r.done.catch(() => undefined)));
  }
}
