/**
 * The agent's DWCP transport for migrations (docs/migration.md, "Over DWCP"). Owns the
 * agent's DWCP listener on its data address, the host's page cache, and per migration:
 * on the destination, the session that feeds the destination QEMU (memory stream through
 * MigrationRelayTarget, NBD connections through ByteRelayTarget); on the source, the
 * session, the local endpoints QEMU's migration and block mirror use instead of the
 * destination's, and the transport decision (auto: measured network mode).
 *
 * Memory pages and disk blocks go through HDE against the same page cache on the
 * destination: its inventory crosses once per session (channel "inv") into a mirror that
 * the memory relay and every NBD connection share (receiver-mirror.ts); per VM, this host
 * remembers the last version it sent or received of each memory page and disk block
 * (`history/<vm>.bin`, `<vm>.disk.bin`), the bases for deltas.
 *
 * A session proves which migration it serves with a token the destination made when it
 * prepared the incoming VM; the server hands it to the source with the endpoints, so only
 * the control plane can point a source at a destination QEMU.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import { mkdirSync, rmSync } from "node:fs";
import path from "node:path";
import type { Logger } from "pino";
import { dialSession } from "../dwcp/amst/dial.js";
import { DwcpListener } from "../dwcp/amst/listen.js";
import type { DwcpSession } from "../dwcp/amst/session.js";
import { PageHistory } from "../dwcp/hde/history.js";
import { PageCache } from "../dwcp/hde/page-cache.js";
import { type ReceiverMirror, readInventory, sendInventory } from "../dwcp/hde/receiver-mirror.js";
import { kernelMinRttMs } from "../dwcp/kernel-rtt.js";
import { classify, type NetworkMode } from "../dwcp/mode.js";
import { Tuner } from "../dwcp/tuner.js";
import { describeError, NovaError } from "../lib/errors.js";
import { ChannelRouter } from "../migration/dwcp/channel-router.js";
import { NbdRelaySource, NbdRelayTarget } from "../migration/dwcp/nbd-relay.js";
import { MigrationRelaySource, type RelayStats } from "../migration/dwcp/relay-source.js";
import { MigrationRelayTarget } from "../migration/dwcp/relay-target.js";
import type { LocalEndpoint } from "../migration/dwcp/socket-io.js";

/** Where a source reaches the destination's DWCP listener for one migration. */
export interface DwcpEndpoint {
  host: string;
  port: number;
  token: string;
}

/** How a migration's data travels, and why. */
export interface TransportDecision {
  chosen: "qemu" | "dwcp";
  mode: NetworkMode | null;
  reason: string;
  rttMs: number | null;
  probedMbps: number | null;
}

/** Options of the agent's DWCP transport. */
export interface AgentDwcpOptions {
  dataDir: string;
  /** The data address to listen on. */
  host: string;
  /** @defaultValue 0 (kernel-chosen; the port travels in the incoming endpoints) */
  port?: number;
  /** Size cap of the host's page cache. @defaultValue 4 GiB */
  cacheBytes?: number;
  log: Logger;
}

interface Incoming {
  token: Buffer;
  vmId: string;
  qemu: LocalEndpoint;
  nbd: LocalEndpoint;
  session: DwcpSession | null;
  relay: MigrationRelayTarget | null;
  nbdRelay: NbdRelayTarget | null;
  history: PageHistory | null;
  diskHistory: PageHistory | null;
}

/** What a migration's relays moved so far. */
export interface OutgoingStats extends RelayStats {
  streams: number;
  mode: NetworkMode | null;
  /** The disk mirror's NBD connections. */
  disk: { logicalBytes: number; wireBytes: number; pages: RelayStats["pages"] };
}

/** Files where a host keeps a VM's last-sent or last-received versions. */
interface HistoryFiles {
  memory: string;
  disk: string;
}

/** The source side of one migration over DWCP. */
export class OutgoingDwcp {
  private nbd: NbdRelaySource | null = null;
  private memory: MigrationRelaySource | null = null;

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

  /** The local NBD endpoint the block mirror writes to (relayed to the destination's export). */
  async nbdEndpoint(): Promise<{ host: string; port: number }> {
    this.nbd ??= await NbdRelaySource.start({
      session: this.session,
      label: "nbd",
      history: this.diskHistory,
      mirror: this.mirror,
      level: this.relayLevel(),
    });
    const ep = this.nbd.endpoint as { host: string; port: number };
    return { host: ep.host, port: ep.port };
  }

  /** The local URI QEMU's outgoing migration connects to. */
  async migrateUri(): Promise<string> {
    this.memory ??= await MigrationRelaySource.start({
      session: this.session,
      label: "mig",
      history: this.history,
      mirror: this.mirror,
      level: this.relayLevel(),
      // Measured on the emulated wan (256 MiB guest, cold): 4 MiB 4.8 s, 8 MiB 3.0-3.9 s,
      // 16 MiB 3.0 s. Downtime grows with it as QEMU's bandwidth estimate starts to count
      // the buffer: 298-630 ms at 8 MiB across runs, 423-485 ms at 16 MiB (one run each).
      maxInFlightBytes: 8 * 1024 * 1024,
    });
    // The memory relay is done once the destination verified the whole stream.
    this.memory.done.then(
      () => this.history.save(this.files.memory),
      () => undefined,
    );
    return this.memory.uri;
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
      disk: {
        logicalBytes: d?.logicalBytes ?? 0,
        wireBytes: d?.wireBytes ?? 0,
        pages: d?.pages ?? { total: 0, zero: 0, ref: 0, delta: 0, full: 0 },
      },
    };
  }

  /** Ends the session (after success or when giving up). */
  close(): void {
    this.tuner.stop();
    this.nbd?.abort("the migration ended");
    this.session.destroy();
    // Only a base for later deltas: a block listed here that never arrived is simply not
    // in the destination's cache, which the mirror checks before using it.
    this.diskHistory.save(this.files.disk);
  }
}

/** One per agent. */
export class AgentDwcp {
  private readonly incoming = new Map<string, Incoming>();
  private readonly outgoing = new Map<string, OutgoingDwcp>();
  private cache: PageCache;
  private readonly cacheDir: string;
  private readonly historyDir: string;

  private constructor(
    private readonly o: AgentDwcpOptions,
    private readonly listener: DwcpListener,
  ) {
    const dir = path.join(o.dataDir, "dwcp");
    this.historyDir = path.join(dir, "history");
    mkdirSync(this.historyDir, { recursive: true });
    this.cacheDir = path.join(dir, "page-cache");
    this.cache = new PageCache(this.cacheDir, o.cacheBytes ?? 4 * 1024 ** 3);
    void this.acceptLoop();
  }

  /** Starts listening on the data address. */
  static async start(o: AgentDwcpOptions): Promise<AgentDwcp> {
    const listener = await DwcpListener.listen({ host: o.host, port: o.port ?? 0 });
    return new AgentDwcp(o, listener);
  }

  /** The listener's address. */
  get endpoint(): { host: string; port: number } {
    return { host: this.o.host, port: this.listener.port };
  }

  // ------------------------------------------------------------------ destination ---

  /** Destination: accept a session for `migrationId` that feeds these local endpoints. */
  expectIncoming(migrationId: string, vmId: string, qemu: LocalEndpoint, nbd: LocalEndpoint): DwcpEndpoint {
    const existing = this.incoming.get(migrationId);
    const token = existing?.token ?? randomBytes(24);
    if (!existing)
      this.incoming.set(migrationId, {
        token,
        vmId,
        qemu,
        nbd,
        session: null,
        relay: null,
        nbdRelay: null,
        history: null,
        diskHistory: null,
      });
    return { ...this.endpoint, token: token.toString("base64url") };
  }

  /**
   * Destination, before resuming the VM: the relayed stream must have been written in full
   * and verified (SHA-256 against the source's), and no disk-mirror relay may have failed.
   * Resolves at once for non-DWCP migrations.
   */
  async incomingVerified(migrationId: string, timeoutMs = 30_000): Promise<void> {
    const inc = this.incoming.get(migrationId);
    if (!inc?.relay) return;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        inc.relay.done,
        new Promise((_, reject) => {
          timer = setTimeout(
            () =>
              reject(new NovaError("NOVA_TIMEOUT", "the DWCP relay did not confirm the migration stream")),
            timeoutMs,
          );
        }),
      ]);
      // Each disk write was acknowledged by the export itself through the relay, so a
      // mirror that completed delivered it; a relay that nonetheless failed (its end-to-end
      // check included) means the disk cannot be trusted.
      const diskError = inc.nbdRelay?.error;
      if (diskError)
        throw new NovaError(
          "NOVA_MIGRATION_RELAY",
          `the disk mirror's DWCP relay failed: ${diskError.message}`,
        );
      const files = this.historyFiles(inc.vmId);
      inc.history?.save(files.memory);
      inc.diskHistory?.save(files.disk);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Destination: the migration ended (either way); drop its session. */
  forgetIncoming(migrationId: string): void {
    const inc = this.incoming.get(migrationId);
    if (!inc) return;
    this.incoming.delete(migrationId);
    inc.session?.destroy();
  }

  private async acceptLoop(): Promise<void> {
    for (;;) {
      let session: DwcpSession;
      try {
        session = await this.listener.accept();
      } catch {
        return; // the listener closed
      }
      void this.serve(session).catch((err: unknown) => {
        this.o.log.warn({ err: err instanceof Error ? err.message : String(err) }, "DWCP session refused");
        session.destroy();
      });
    }
  }

  private async serve(session: DwcpSession): Promise<void> {
    const router = new ChannelRouter(session);
    // A peer that connects but never says which migration it serves is dropped.
    let timer: NodeJS.Timeout | undefined;
    const helloTimeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new NovaError("NOVA_TIMEOUT", "DWCP peer sent no hello within 10 s")),
        10_000,
      );
    });
    const hello = await Promise.race([router.take("hello"), helloTimeout]);
    const msg = await Promise.race([hello.read(), helloTimeout]).finally(() => clearTimeout(timer));
    let req: { migrationId?: string; token?: string } = {};
    try {
      req = JSON.parse(msg?.toString("utf8") ?? "{}");
    } catch {
      // answered below
    }
    const inc = req.migrationId ? this.incoming.get(req.migrationId) : undefined;
    const given = Buffer.from(req.token ?? "", "base64url");
    if (!inc || given.length !== inc.token.length || !timingSafeEqual(given, inc.token)) {
      await hello.send(Buffer.from(JSON.stringify({ ok: false, error: "unknown migration or bad token" })));
      await hello.end().catch(() => undefined);
      throw new NovaError("NOVA_FORBIDDEN", `DWCP session for unknown migration ${req.migrationId ?? "?"}`);
    }
    if (inc.session && inc.relay) {
      // Data may already have reached the destination QEMU through the first session.
      await hello.send(
        Buffer.from(JSON.stringify({ ok: false, error: "this migration already has a session" })),
      );
      await hello.end().catch(() => undefined);
      throw new NovaError("NOVA_CONFLICT", `DWCP session for migration ${req.migrationId} already running`);
    }
    // An earlier session that never said "go" (the source measured the path, then chose
    // QEMU's transport, or restarted) carried nothing; a peer's session outlives its
    // connections for a while, so the newer one replaces it instead of being refused.
    inc.session?.destroy();
    inc.session = session;
    await hello.send(Buffer.from(JSON.stringify({ ok: true })));
    await hello.end();
    // The source measures the path first; only if it chose DWCP does it open "go". A
    // session that ends instead (QEMU's transport chosen) leaves nothing behind here.
    try {
      await router.take("go");
    } catch {
      if (inc.session === session) inc.session = null;
      return;
    }
    ({ memory: inc.history, disk: inc.diskHistory } = this.loadHistories(inc.vmId));
    inc.nbdRelay = new NbdRelayTarget({
      router,
      label: "nbd",
      target: inc.nbd,
      cache: this.cache,
      history: inc.diskHistory,
      announce: false,
    });
    inc.relay = new MigrationRelayTarget({
      router,
      label: "mig",
      qemu: inc.qemu,
      cache: this.cache,
      history: inc.history,
      announce: false,
    });
    // One inventory for the whole session; the relays' own channels announce none.
    await sendInventory(await router.take("inv"), this.cache);
    // A relay that failed on damaged cache pages (each is detected by its hash and never
    // used) leaves the others in place for the next try to trip over: start the cache afresh.
    const corruptBefore = this.cache.stats().corrupt;
    const cache = this.cache;
    inc.relay.done.catch(() => {
      if (this.cache === cache && cache.stats().corrupt > corruptBefore) this.resetCache();
    });
  }

  private resetCache(): void {
    this.o.log.warn({ dir: this.cacheDir }, "page cache had damaged pages; starting it empty");
    this.cache.close();
    rmSync(this.cacheDir, { recursive: true, force: true });
    this.cache = new PageCache(this.cacheDir, this.o.cacheBytes ?? 4 * 1024 ** 3);
  }

  // ----------------------------------------------------------------------- source ---

  /**
   * Source: connects to the destination for `migrationId` and decides the transport. With
   * "auto", a datacenter-class path (RTT < 10 ms and >= 1 Gbit/s measured, or RTT < 1 ms)
   * goes over QEMU's own transport, where the benchmark shows it is faster; anything
   * slower over DWCP.
   */
  async startOutgoing(
    migrationId: string,
    vmId: string,
    to: DwcpEndpoint,
    requested: "auto" | "dwcp",
  ): Promise<TransportDecision> {
    const existing = this.outgoing.get(migrationId);
    if (existing) return existing.decision;
    let session: DwcpSession;
    try {
      session = await dialSession({ host: to.host, port: to.port, streams: 2 });
    } catch (err) {
      if (requested === "dwcp") throw err;
      // auto: a destination whose DWCP listener cannot be reached still gets the VM.
      return {
        chosen: "qemu",
        mode: null,
        reason: `auto: the destination's DWCP listener is unreachable (${describeError(err)})`,
        rttMs: null,
        probedMbps: null,
      };
    }
    try {
      const hello = session.openChannel("hello");
      await hello.send(Buffer.from(JSON.stringify({ migrationId, token: to.token })));
      await hello.end();
      const answer = JSON.parse((await hello.read())?.toString("utf8") ?? "{}") as {
        ok?: boolean;
        error?: string;
      };
      if (!answer.ok)
        throw new NovaError(
          "NOVA_MIGRATION_RELAY",
          `The destination refused the DWCP session: ${answer.error}`,
        );
      const tuner = new Tuner(session, []);
      await tuner.ready;
      // The kernel's RTT first: one timed in user space reads high on a loaded host.
      const kernelRtt = await kernelMinRttMs(session.connectionSockets());
      const rttMs = kernelRtt ?? session.stats().minRttMs;
      const probed = tuner.state.probedBps;
      const mode =
        rttMs === null
          ? null
          : classify({ rttMs, bandwidthBps: probed > 0 ? probed * 8 : Number.POSITIVE_INFINITY });
      const probedMbps = probed > 0 ? Math.round((probed * 8) / 1e6) : null;
      const rttText = rttMs === null ? "?" : rttMs < 1 ? rttMs.toFixed(2) : rttMs.toFixed(1);
      const measured = `RTT ${rttText} ms${kernelRtt === null ? "" : " (kernel)"}${probedMbps ? `, probe ${probedMbps} Mbit/s` : ""}`;
      // A sub-millisecond RTT is a LAN whatever the probe says: the probe runs through
      // DWCP's own CPU-heavy path and reads low on a loaded host (seen on loopback under
      // test load), while QEMU's transport is the faster one on any LAN.
      const lan = rttMs !== null && rttMs < 1;
      if (requested === "auto" && (mode === "datacenter" || lan)) {
        tuner.stop();
        session.destroy();
        return {
          chosen: "qemu",
          mode: "datacenter",
          reason: `auto: datacenter-class path (${measured}${mode === "datacenter" ? "" : ", RTT under 1 ms"}); QEMU's own transport is faster there`,
          rttMs,
          probedMbps,
        };
      }
      const decision: TransportDecision = {
        chosen: "dwcp",
        mode,
        reason:
          requested === "dwcp"
            ? `requested (${measured}, mode ${mode ?? "unknown"})`
            : `auto: ${mode ?? "unknown"} path (${measured})`,
        rttMs,
        probedMbps,
      };
      // Tells the destination to set up its relays (see serve()).
      await session.openChannel("go").end();
      // Several streams feed the destination's cache in an order this side cannot know
      // exactly: the shared mirror stays 1/16 smaller than the cache (receiver-mirror.ts).
      const mirror = await readInventory(session.openChannel("inv"), { slackShare: 1 / 16 });
      const { memory, disk } = this.loadHistories(vmId);
      this.outgoing.set(
        migrationId,
        new OutgoingDwcp(decision, session, tuner, mirror, memory, disk, this.historyFiles(vmId)),
      );
      return decision;
    } catch (err) {
      session.destroy();
      throw err;
    }
  }

  /** Source: the DWCP side of a migration, if it runs over DWCP. */
  outgoingOf(migrationId: string): OutgoingDwcp | undefined {
    return this.outgoing.get(migrationId);
  }

  /** Source: the migration ended (either way). */
  finishOutgoing(migrationId: string): void {
    const out = this.outgoing.get(migrationId);
    if (!out) return;
    this.outgoing.delete(migrationId);
    out.close();
  }

  /** This host's last memory-page and disk-block versions of a VM, the bases for deltas. */
  private loadHistories(vmId: string): { memory: PageHistory; disk: PageHistory } {
    const files = this.historyFiles(vmId);
    const memory = new PageHistory(this.cache);
    memory.load(files.memory);
    const disk = new PageHistory(this.cache);
    disk.load(files.disk);
    return { memory, disk };
  }

  private historyFiles(vmId: string): HistoryFiles {
    return {
      memory: path.join(this.historyDir, `${vmId}.bin`),
      disk: path.join(this.historyDir, `${vmId}.disk.bin`),
    };
  }

  /** Stops listening and ends every session. */
  async close(): Promise<void> {
    for (const id of [...this.outgoing.keys()]) this.finishOutgoing(id);
    for (const id of [...this.incoming.keys()]) this.forgetIncoming(id);
    await this.listener.close();
    this.cache.close();
  }
}
