/**
 * The source side of migrations over DWCP: dials the destination, says hello (control.ts),
 * measures the path and lets transport-choice.ts decide; for DWCP it opens the relays QEMU's
 * migration and block mirror connect to instead of the destination (OutgoingDwcp), deduping
 * against the destination's cache as its inventory describes it.
 */

import type { ConnectionOptions } from "node:tls";
import { dialSession } from "../../dwcp/amst/dial.js";
import type { DwcpSession } from "../../dwcp/amst/session.js";
import type { PageHistory } from "../../dwcp/hde/history.js";
import { type ReceiverMirror, readInventory } from "../../dwcp/hde/receiver-mirror.js";
import { kernelMinRttMs } from "../../dwcp/kernel-rtt.js";
import type { DwcpMetrics } from "../../dwcp/metrics.js";
import type { NetworkMode } from "../../dwcp/mode.js";
import type { PathMemory, RememberedPath } from "../../dwcp/pba/path-memory.js";
import { Tuner } from "../../dwcp/tuner.js";
import { describeError, NovaError } from "../../lib/errors.js";
import { NbdRelaySource } from "../../migration/dwcp/nbd-relay.js";
import { MigrationRelaySource, type RelayStats } from "../../migration/dwcp/relay-source.js";
import { RUN_AHEAD_MIN } from "../relay-run-ahead.js";
import { CONTROL_CHANNELS, type DwcpEndpoint, sayHello } from "./control.js";
import type { DwcpPageStore, HistoryFiles } from "./page-store.js";
import { chooseForPath, chooseWhenUnreachable, type TransportDecision } from "./transport-choice.js";

/** What a migration's relays moved so far. */
export interface OutgoingStats extends RelayStats {
  streams: number;
  mode: NetworkMode | null;
  /** The disk mirror's NBD connections. */
  disk: { logicalBytes: number; wireBytes: number; pages: RelayStats["pages"] };
  /** The session started from what this path last sustained (path-memory.ts). */
  startedFrom: { streams: number; capacityBps: number; mode: NetworkMode; level: number; at: number } | null;
}

/** The source side of one migration over DWCP. */
export class OutgoingDwcp {
  private nbd: NbdRelaySource | null = null;
  private memory: MigrationRelaySource | null = null;
  private nbdStart: Promise<NbdRelaySource> | null = null;
  private memoryStart: Promise<MigrationRelaySource> | null = null;
  private closed = false;

  constructor(
    readonly decision: TransportDecision,
    private readonly session: DwcpSession,
    private readonly tuner: Tuner,
    /** The destination's cache as this side knows it, shared by the relays. */
    private readonly mirror: ReceiverMirror,
    private readonly history: PageHistory,
    private readonly diskHistory: PageHistory,
    private readonly files: HistoryFiles,
  ) {}

  /**
   * Starts both relays without waiting for them: their channels open now, before the
   * mirror's writes fill the session (the memory relay's class is bulk, so its opening and
   * inventory exchange would queue behind them), and memory may start as soon as the
   * mirror runs (docs/migration.md). Their round trips overlap the mirror's start.
   */
  prepare(): void {
    this.nbdRelay().catch(() => undefined);
    this.memoryRelayStarted().catch(() => undefined);
  }

  private nbdRelay(): Promise<NbdRelaySource> {
    this.nbdStart ??= NbdRelaySource.start({
      session: this.session,
      label: "nbd",
      history: this.diskHistory,
      mirror: this.mirror,
      level: this.relayLevel(),
      // The mirror keeps few writes in flight and waits a round trip for each: its frames
      // go before queued memory, which fills whatever the disk leaves of the link. At
      // switch-over the mirror's last writes and flushes are on the critical path too.
      priority: "normal",
    }).then((relay) => {
      this.nbd = relay;
      if (this.closed) relay.abort("the migration ended");
      return relay;
    });
    return this.nbdStart;
  }

  private memoryRelayStarted(): Promise<MigrationRelaySource> {
    this.memoryStart ??= MigrationRelaySource.start({
      session: this.session,
      label: "mig",
      history: this.history,
      mirror: this.mirror,
      level: this.relayLevel(),
      // The bound near QEMU's switch-over decision; the agent raises it while most of the
      // first pass is still to come (relay-run-ahead.ts says why and how far).
      maxInFlightBytes: RUN_AHEAD_MIN,
      priority: "bulk",
    }).then((relay) => {
      this.memory = relay;
      // The bulk of the bytes: its level follows the tuner from now on.
      this.tuner.adopt(relay.pageCompressor, 1);
      // The memory relay is done once the destination verified the whole stream.
      relay.done.then(
        () => this.history.save(this.files.memory),
        () => undefined,
      );
      if (this.closed) relay.abort("the migration ended");
      return relay;
    });
    return this.memoryStart;
  }

  /** The local NBD endpoint the block mirror writes to (relayed to the destination's export). */
  async nbdEndpoint(): Promise<{ host: string; port: number }> {
    const ep = (await this.nbdRelay()).endpoint as { host: string; port: number };
    return { host: ep.host, port: ep.port };
  }

  /** The local URI QEMU's outgoing migration connects to. */
  async migrateUri(): Promise<string> {
    return (await this.memoryRelayStarted()).uri;
  }

  /** The memory relay, once QEMU's stream has somewhere to go. */
  memoryRelay(): MigrationRelaySource | null {
    return this.memory;
  }

  /** zstd level for the relays: the tuner's, at least 1 (page batches always compress). */
  private relayLevel(): number {
    return this.tuner.state.level > 0 ? this.tuner.state.level : 1;
  }

  /** Counters for the migration's progress. */
  stats(): OutgoingStats | null {
    if (!this.memory && !this.nbd) return null;
    const m: RelayStats = this.memory?.stats() ?? {
      logicalBytes: 0,
      wireBytes: 0,
      ratio: 0,
      deliveredBytes: 0,
      returnBytes: 0,
      qemuZeroPages: 0,
      pages: { total: 0, zero: 0, ref: 0, delta: 0, full: 0 },
      parserMode: "parsing",
      parserReason: null,
    };
    const d = this.nbd?.stats();
    return {
      ...m,
      streams: this.session.streamCount,
      mode: this.tuner.state.mode,
      startedFrom: this.startedFrom(),
      disk: {
        logicalBytes: d?.logicalBytes ?? 0,
        wireBytes: d?.wireBytes ?? 0,
        pages: d?.pages ?? { total: 0, zero: 0, ref: 0, delta: 0, full: 0 },
      },
    };
  }

  private startedFrom(): OutgoingStats["startedFrom"] {
    const r = this.tuner.startedFrom;
    return r
      ? { streams: r.streams, capacityBps: r.capacityBps, mode: r.mode, level: r.level, at: r.at }
      : null;
  }

  /** Ends the session (after success or when giving up); returns what the path sustained. */
  close(): RememberedPath | null {
    const sustained = this.tuner.snapshot();
    this.closed = true;
    this.tuner.stop();
    this.nbd?.abort("the migration ended");
    this.session.destroy();
    // Only a base for later deltas: a block listed here that never arrived is simply not
    // in the destination's cache, which the mirror checks before using it.
    this.diskHistory.save(this.files.disk);
    return sustained;
  }
}

/** One per agent: the migrations this host sends over DWCP. */
export class DwcpSource {
  private readonly outgoing = new Map<string, { out: OutgoingDwcp; peer: string }>();

  constructor(
    private readonly pages: DwcpPageStore,
    /** TLS client options for a destination (null: plaintext, the explicit opt-in). */
    private readonly tlsFor: (to: DwcpEndpoint) => ConnectionOptions | null,
    /** What each destination's path last sustained: sessions start from it. */
    private readonly paths: PathMemory,
    /** The agent's DWCP metrics: each session's tuner publishes into them. */
    private readonly metrics?: DwcpMetrics,
  ) {}

  /** Connects to the destination for `migrationId` and decides the transport. */
  async start(
    migrationId: string,
    vmId: string,
    to: DwcpEndpoint,
    requested: "auto" | "dwcp",
  ): Promise<TransportDecision> {
    const existing = this.outgoing.get(migrationId);
    if (existing) return existing.out.decision;
    // The destination host's name when known: its address may change, its path rarely.
    const peer = to.name ?? `${to.host}:${to.port}`;
    let session: DwcpSession;
    try {
      const tls = this.tlsFor(to);
      // One connection to start: the tuner adds the rest in the background (tuner.ts).
      session = await dialSession({ host: to.host, port: to.port, streams: 1, ...(tls ? { tls } : {}) });
    } catch (err) {
      const fallback = chooseWhenUnreachable({ requested, error: describeError(err) });
      if (!fallback) throw err;
      return fallback;
    }
    try {
      const answer = await sayHello(session, { migrationId, token: to.token });
      if (!answer.ok)
        throw new NovaError(
          "NOVA_MIGRATION_RELAY",
          `The destination refused the DWCP session: ${answer.error}`,
        );
      const remembered = this.paths.recall(peer);
      const tuner = new Tuner(session, [], {
        ...(remembered ? { remembered } : {}),
        ...(this.metrics ? { metrics: this.metrics } : {}),
      });
      await tuner.ready;
      const decision = chooseForPath({
        requested,
        kernelRttMs: await kernelMinRttMs(session.connectionSockets()),
        sessionRttMs: session.stats().minRttMs,
        probedBps: tuner.state.probedBps,
      });
      if (decision.chosen === "qemu") {
        tuner.stop();
        session.destroy();
        return decision;
      }
      // Tells the destination to set up its relays (target.ts).
      await session.openChannel(CONTROL_CHANNELS.go).end();
      // Several streams feed the destination's cache in an order this side cannot know
      // exactly: the shared mirror stays 1/16 smaller than the cache (receiver-mirror.ts).
      const mirror = await readInventory(session.openChannel(CONTROL_CHANNELS.inventory), {
        slackShare: 1 / 16,
      });
      const { memory, disk } = this.pages.loadHistories(vmId);
      const out = new OutgoingDwcp(
        decision,
        session,
        tuner,
        mirror,
        memory,
        disk,
        this.pages.historyFiles(vmId),
      );
      out.prepare();
      this.outgoing.set(migrationId, { out, peer });
      this.metrics?.sessions.set(this.outgoing.size);
      return decision;
    } catch (err) {
      session.destroy();
      throw err;
    }
  }

  /** The DWCP side of a migration, if it runs over DWCP. */
  of(migrationId: string): OutgoingDwcp | undefined {
    return this.outgoing.get(migrationId)?.out;
  }

  /** The migration ended (either way): its path's figures are kept for the next session. */
  finish(migrationId: string): void {
    const o = this.outgoing.get(migrationId);
    if (!o) return;
    this.outgoing.delete(migrationId);
    this.record(o.out.stats());
    const sustained = o.out.close();
    if (sustained) this.paths.remember(o.peer, sustained);
  }

  /** Adds an ended session's bytes to the counters and publishes its HDE ratios. */
  private record(stats: OutgoingStats | null): void {
    const m = this.metrics;
    if (!m) return;
    m.sessions.set(this.outgoing.size);
    if (this.outgoing.size === 0) m.streams.set(0);
    if (!stats) return;
    const logical = stats.logicalBytes + stats.disk.logicalBytes;
    const wire = stats.wireBytes + stats.disk.wireBytes;
    m.bytesIn.inc(logical);
    m.bytesOnWire.inc(wire);
    if (wire > 0) m.compressionRatio.set(logical / wire);
    const pages = stats.pages.total + stats.disk.pages.total;
    if (pages > 0) m.dedupRatio.set((stats.pages.ref + stats.disk.pages.ref) / pages);
  }

  /** Ends every outgoing migration's session. */
  finishAll(): void {
    for (const id of [...this.outgoing.keys()]) this.finish(id);
  }
}
