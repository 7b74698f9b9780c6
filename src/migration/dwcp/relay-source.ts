/**
 * Source half of the DWCP migration relay (docs/migration-stream.md, "Relay"): owns the
 * local socket QEMU's outgoing `migrate` connects to, splitting the stream
 * (stream-parser.ts) into RAM pages for the HDE page channel and verbatim bytes plus page
 * positions for the control channel, keeping how far it runs ahead of the destination
 * small, relaying QEMU's return path, and the counters (logical vs wire bytes, page kinds).
 *
 * Order: a segment naming pages always goes out before the batch holding them, on the
 * same session; the destination therefore always knows where the next page belongs and
 * never has to buffer more than its bounded page queue.
 *
 * Buffering and QEMU's bandwidth estimate: QEMU decides when to switch over from the rate
 * at which its socket accepts bytes. The relay reads from QEMU only while the stream bytes
 * not yet written into the destination QEMU stay under `maxInFlightBytes` (the destination
 * reports progress), so QEMU sees the end-to-end rate, not the speed of a local buffer.
 *
 * Failure: any error destroys the QEMU socket (QEMU's migration fails, the VM keeps running
 * on the source) and aborts both channels (the destination then fails its incoming side).
 */
import { createHash } from "node:crypto";
import type { Server, Socket } from "node:net";
import type { Channel } from "../../dwcp/amst/channel.js";
import type { ChannelPriority } from "../../dwcp/amst/send-window.js";
import type { DwcpSession } from "../../dwcp/amst/session.js";
import type { BatchCompressor } from "../../dwcp/hde/codec.js";
import type { PageHistory } from "../../dwcp/hde/history.js";
import { PageSender, type PageSendStats } from "../../dwcp/hde/page-sender.js";
import type { ReceiverMirror } from "../../dwcp/hde/receiver-mirror.js";
import { FRAME_HEADER_BYTES } from "../../dwcp/wire/frame.js";
import { NovaError } from "../../lib/errors.js";
import type { ReturnPath } from "./nbd-local-answers.js";
import {
  CtlMsg,
  decodeCounter,
  decodeVerdict,
  encodeEnd,
  SegmentBuilder,
  SegmentCompressor,
} from "./relay-codec.js";
import { relayError } from "./relay-error.js";
import { type LocalEndpoint, listenLocal, qemuUri, waitDrain } from "./socket-io.js";
import { QemuStreamSplitter, type SplitEvent, type StreamSplitter } from "./splitter.js";

/** Source relay options. */
export interface SourceRelayOptions {
  session: DwcpSession;
  /** Channel label prefix; the destination relay must use the same. @defaultValue "mig" */
  label?: string;
  /** Where QEMU connects. @defaultValue 127.0.0.1, port chosen by the kernel */
  listen?: LocalEndpoint;
  /** This host's last-sent page versions (for deltas); null disables deltas. */
  history?: PageHistory | null;
  /** zstd level for page batches and control segments (0 = off). @defaultValue 3 */
  level?: number;
  /** Pages per HDE batch. @defaultValue 256 */
  batchPages?: number;
  /** Flush a partial batch after QEMU has been quiet this long. @defaultValue 2 */
  idleFlushMs?: number;
  /**
   * Stream bytes read from QEMU but not yet written into the destination QEMU. Size it at
   * about twice the link's bandwidth-delay product in stream bytes; every byte of it adds
   * its transfer time to the switch-over pause QEMU did not plan for. @defaultValue 4 MiB
   */
  maxInFlightBytes?: number;
  /** Frame payload assumed for the wire-byte estimate. @defaultValue 256 KiB */
  framePayload?: number;
  /** What the stream is. @defaultValue a QemuStreamSplitter (QEMU's migration stream) */
  splitter?: StreamSplitter;
  /**
   * A mirror of the destination's cache shared with other relays of the session; the
   * destination relay must then be started with `announce: false`.
   */
  mirror?: ReceiverMirror;
  /**
   * Send class of the relay's channels when other channels of the session have data
   * queued too (docs/dwcp.md §4.6). @defaultValue "normal"
   */
  priority?: ChannelPriority;
  /**
   * Lets the stream's protocol answer some requests here and filter the destination's
   * replies (NBD flushes, nbd-local-answers.ts). @defaultValue every reply passes verbatim
   */
  returnPath?: ReturnPath;
}

/** Progress arrives every 256 KiB; below 1 MiB the relay would wait on reports, not data. */
const MIN_IN_FLIGHT = 1024 * 1024;

/** Counters of a relayed stream. */
export interface RelayStats {
  /** Stream bytes read from QEMU. */
  logicalBytes: number;
  /** Estimated bytes on the wire: channel messages plus their frame headers. */
  wireBytes: number;
  /** logical / wire. */
  ratio: number;
  /** Stream bytes the destination has written into its QEMU. */
  deliveredBytes: number;
  /** Bytes the destination's side sent back (QEMU's return path, an NBD server's replies). */
  returnBytes: number;
  /** QEMU's own zero-page records (9 bytes each, carried verbatim). */
  qemuZeroPages: number;
  /** Pages through HDE and what HDE made of them. */
  pages: { total: number; zero: number; ref: number; delta: number; full: number };
  parserMode: string;
  parserReason: string | null;
}

/** What a finished source relay reports. */
export interface SourceRelayResult {
  stats: RelayStats;
  hde: PageSendStats;
  truncated: boolean;
}

const HEADER = 8;

/** Carries one outgoing QEMU migration over a DWCP session. */
export class MigrationRelaySource {
  /** Resolves after the destination verified the whole stream; rejects on any failure. */
  readonly done: Promise<SourceRelayResult>;
  private resolveDone!: (r: SourceRelayResult) => void;
  private rejectDone!: (e: Error) => void;
  private server: Server | null = null;
  private endpointValue: LocalEndpoint | null = null;
  private sock: Socket | null = null;
  private readonly parser: StreamSplitter;
  private readonly hash = createHash("sha256");
  private readonly builder = new SegmentBuilder();
  private readonly compressor: SegmentCompressor;
  private held: Buffer | null = null;
  private logical = 0;
  private delivered = 0;
  private returned = 0;
  private ctlOut = 0;
  private ctlFrames = 0;
  private pagesSent = 0;
  private work: Promise<void> = Promise.resolve();
  private idleTimer: NodeJS.Timeout | null = null;
  private progressWaiter: (() => void) | null = null;
  private verdictWaiter: {
    resolve: (v: { ok: boolean; bytes: number }) => void;
    reject: (e: Error) => void;
  } | null = null;
  private ctlReader: Promise<void> = Promise.resolve();
  /** Return-path bytes that arrived before attach(). */
  private earlyReturns: Buffer[] = [];
  private failure: Error | null = null;
  private finished = false;
  private qemuEnded = false;
  private readonly batchPages: number;
  private maxInFlight: number;
  private readonly framePayload: number;

  private constructor(
    private readonly options: SourceRelayOptions,
    private readonly ctl: Channel,
    private readonly pagesCh: Channel,
    private readonly sender: PageSender,
  ) {
    this.parser = options.splitter ?? new QemuStreamSplitter();
    this.compressor = new SegmentCompressor(options.level ?? 3);
    this.batchPages = options.batchPages ?? 256;
    this.maxInFlight = Math.max(MIN_IN_FLIGHT, options.maxInFlightBytes ?? 4 * 1024 * 1024);
    this.framePayload = options.framePayload ?? 256 * 1024;
    this.done = new Promise((resolve, reject) => {
      this.resolveDone = resolve;
      this.rejectDone = reject;
    });
    this.done.catch(() => undefined);
  }

  /**
   * Opens the channels, reads the destination's cache inventory (the destination relay
   * must be running), and listens for QEMU. Give `uri` to QEMU's `migrate`.
   */
  static async start(options: SourceRelayOptions): Promise<MigrationRelaySource> {
    const relay = await MigrationRelaySource.open(options);
    try {
      const { server, endpoint } = await listenLocal(options.listen ?? { port: 0 }, (s) => relay.attach(s));
      relay.server = server;
      relay.endpointValue = endpoint;
    } catch (err) {
      throw relay.fail(err);
    }
    return relay;
  }

  /**
   * Opens the channels and reads the destination's cache inventory, without a listener:
   * hand the stream's socket to attach().
   */
  static async open(options: SourceRelayOptions): Promise<MigrationRelaySource> {
    const label = options.label ?? "mig";
    const priority = options.priority ?? "normal";
    const ctl = options.session.openChannel(`${label}/ctl`, { priority });
    const pagesCh = options.session.openChannel(`${label}/pages`, { priority });
    const history = options.history ?? null;
    const sender = new PageSender(pagesCh, {
      level: options.level ?? 3,
      history,
      ...(options.mirror ? { mirror: options.mirror } : {}),
      // Batches are cut by the relay, right after the segment naming their pages.
      batchPages: Number.MAX_SAFE_INTEGER,
      source: {
        readPage: (pageNo) => {
          const page = history?.lastContent(pageNo);
          if (!page)
            throw new NovaError("NOVA_MIGRATION_RELAY", `Page ${pageNo} is no longer available to resend`);
          return page;
        },
      },
    });
    const relay = new MigrationRelaySource(options, ctl, pagesCh, sender);
    try {
      await sender.start();
      relay.ctlReader = relay.readCtl();
    } catch (err) {
      throw relay.fail(err);
    }
    return relay;
  }

  /** The URI to give QEMU's `migrate`. */
  get uri(): string {
    return qemuUri(this.endpointValue!);
  }

  /** Where QEMU must connect. */
  get endpoint(): LocalEndpoint {
    return this.endpointValue!;
  }

  /** The page stream's compressor, so a policy (the DWCP Tuner) can set the zstd level. */
  get zstd(): PageSender["zstd"] {
    return this.sender.zstd;
  }

  /** Current counters. */
  stats(): RelayStats {
    const s = this.sender.stats;
    const frames = this.ctlFrames + Math.ceil(s.bytesOut / this.framePayload);
    const wire = this.ctlOut + s.bytesOut + FRAME_HEADER_BYTES * frames;
    return {
      logicalBytes: this.logical,
      wireBytes: wire,
      ratio: wire > 0 ? this.logical / wire : 0,
      deliveredBytes: this.delivered,
      returnBytes: this.returned,
      qemuZeroPages: this.parser.formatZeroPages,
      pages: { total: s.pages, zero: s.zero, ref: s.ref, delta: s.delta, full: s.full },
      parserMode: this.parser.mode,
      parserReason: this.parser.reason,
    };
  }

  /** Stops the relay: QEMU's migration fails and the source VM keeps running. */
  abort(reason: string): void {
    this.fail(new NovaError("NOVA_MIGRATION_RELAY", `Migration relay aborted: ${reason}`));
  }

  private fail(err: unknown): Error {
    if (this.failure) return this.failure;
    const e = relayError(err);
    this.failure = e;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.sock?.destroy();
    this.server?.close();
    for (const ch of [this.ctl, this.pagesCh]) if (ch.error === null) ch.abort(e.message);
    this.progressWaiter?.();
    this.verdictWaiter?.reject(e);
    this.rejectDone(e);
    return e;
  }

  /** Relays the stream of `s` (the one connection; a second is refused, e.g. multifd's). */
  attach(s: Socket): void {
    if (this.sock || this.failure) {
      s.destroy();
      return;
    }
    if (s.destroyed) {
      // It closed while the channels were being opened (NbdRelaySource attaches late).
      this.fail(
        new NovaError("NOVA_MIGRATION_RELAY", "The local connection closed before the relay started"),
      );
      return;
    }
    this.sock = s;
    this.server?.close();
    s.setNoDelay(true);
    for (const b of this.earlyReturns) s.write(b);
    this.earlyReturns = [];
    this.writeReturn(this.options.returnPath?.takeLocal() ?? []);
    s.on("data", (chunk: Buffer) => {
      s.pause();
      if (this.idleTimer) clearTimeout(this.idleTimer);
      this.idleTimer = null;
      this.enqueue(() => this.onChunk(chunk)).then(() => {
        if (this.failure) return;
        s.resume();
        this.idleTimer = setTimeout(
          () => void this.enqueue(() => this.flush()),
          this.options.idleFlushMs ?? 2,
        );
      });
    });
    s.on("end", () => {
      this.qemuEnded = true;
      void this.enqueue(() => this.finish());
    });
    s.on("error", () => undefined);
    s.on("close", () => {
      if (!this.qemuEnded && !this.finished)
        this.fail(new NovaError("NOVA_MIGRATION_RELAY", "The source QEMU's migration socket broke"));
    });
  }

  private enqueue(fn: () => Promise<void>): Promise<void> {
    this.work = this.work.then(async () => {
      if (this.failure) return;
      try {
        await fn();
      } catch (err) {
        this.fail(err);
      }
    });
    return this.work;
  }

  /** The page batches' compressor, for a policy that sets its level (tuner.ts). */
  get pageCompressor(): BatchCompressor {
    return this.sender.zstd;
  }

  /** How far the relay may run ahead of the destination QEMU (`maxInFlightBytes`). */
  get maxInFlightBytes(): number {
    return this.maxInFlight;
  }

  /** Changes how far the relay may run ahead of the destination QEMU (at least 1 MiB). */
  setMaxInFlight(bytes: number): void {
    this.maxInFlight = Math.max(MIN_IN_FLIGHT, bytes);
    // A reader waiting for the backlog to shrink re-checks against the new bound.
    const w = this.progressWaiter;
    this.progressWaiter = null;
    w?.();
  }

  private async onChunk(chunk: Buffer): Promise<void> {
    this.logical += chunk.length;
    const rewrites = this.parser.rewrites === true;
    if (!rewrites) this.hash.update(chunk);
    const events = this.parser.push(chunk);
    if (rewrites) for (const e of events) this.hash.update(e.data);
    // Answers made here (the splitter told the return path of each request) go at once.
    const local = this.options.returnPath?.takeLocal();
    if (local && local.length > 0) this.writeReturn(local);
    await this.handle(events);
    if (this.logical - this.delivered > this.maxInFlight) {
      await this.flush();
      while (!this.failure && this.logical - this.delivered > this.maxInFlight / 2) {
        await new Promise<void>((resolve) => {
          this.progressWaiter = resolve;
        });
      }
    }
  }

  private async handle(events: SplitEvent[]): Promise<void> {
    for (const e of events) {
      if (e.kind === "bytes") {
        if (this.held) this.builder.bytes(this.held);
        this.held = e.data;
        continue;
      }
      const held = this.held;
      this.held = null;
      if (held && held.length >= HEADER) {
        if (held.length > HEADER) this.builder.bytes(held.subarray(0, held.length - HEADER));
        this.builder.page(held.subarray(held.length - HEADER));
      } else {
        if (held) this.builder.bytes(held);
        this.builder.page();
      }
      this.pagesSent++;
      await this.sender.writePage(e.pageNo, e.data);
      if (this.builder.pages >= this.batchPages || this.builder.rawBytes >= 256 * 1024) await this.flush();
    }
    if (this.builder.rawBytes >= 256 * 1024) await this.flush();
  }

  /** Sends the segment, then the batch of the pages it names. */
  private async flush(): Promise<void> {
    if (this.held) {
      this.builder.bytes(this.held);
      this.held = null;
    }
    if (this.builder.empty) return;
    const { body } = this.builder.take();
    const msg = this.compressor.encode(body);
    this.ctlOut += msg.length;
    this.ctlFrames += Math.ceil(msg.length / this.framePayload);
    await this.ctl.send(msg);
    await this.sender.flush();
  }

  private async finish(): Promise<void> {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    const end = this.parser.end();
    if (this.parser.rewrites) for (const e of end.events) this.hash.update(e.data);
    await this.handle(end.events);
    await this.flush();
    const verdict = new Promise<{ ok: boolean; bytes: number }>((resolve, reject) => {
      this.verdictWaiter = { resolve, reject };
    });
    verdict.catch(() => undefined);
    const msg = encodeEnd({
      bytes: this.logical,
      sha256: this.hash.digest(),
      pages: this.pagesSent,
      truncated: end.truncated,
    });
    this.ctlOut += msg.length;
    this.ctlFrames++;
    await this.ctl.send(msg);
    const hde = await this.sender.finish();
    const v = await verdict;
    if (!v.ok || v.bytes !== this.logical) {
      throw new NovaError("NOVA_MIGRATION_RELAY", "The destination rebuilt a different stream", {
        details: { sentBytes: this.logical, writtenBytes: v.bytes },
      });
    }
    // The destination's replies travel before its verdict on the same channel.
    this.options.returnPath?.confirmAll();
    this.finished = true;
    await this.ctl.end();
    await this.ctlReader;
    this.sock?.destroy();
    this.resolveDone({ stats: this.stats(), hde, truncated: end.truncated });
  }

  /**
   * Writes return-path bytes to the local client, all at once: a local answer may be
   * inserted only where the return path said, so nothing may come between these pieces.
   * false when the socket asks the writer to wait for drain.
   */
  private writeReturn(pieces: Buffer[]): boolean {
    const s = this.sock;
    if (!s || s.destroyed || !s.writable) return true;
    let room = true;
    for (const b of pieces) room = s.write(b);
    return room;
  }

  private async readCtl(): Promise<void> {
    try {
      for (;;) {
        const m = await this.ctl.read();
        if (m === null) return;
        switch (m[0]) {
          case CtlMsg.RETURN: {
            this.returned += m.length - 1;
            const rp = this.options.returnPath;
            const pieces = rp ? rp.fromDestination(m.subarray(1)) : [m.subarray(1)];
            if (!this.sock) {
              // The destination spoke before the stream's socket was attached (an NBD
              // server's greeting, on a fast path): keep it for attach().
              this.earlyReturns.push(...pieces);
              break;
            }
            if (!this.writeReturn(pieces)) await waitDrain(this.sock);
            break;
          }
          case CtlMsg.PROGRESS: {
            this.delivered = decodeCounter(m);
            const w = this.progressWaiter;
            this.progressWaiter = null;
            w?.();
            break;
          }
          case CtlMsg.VERDICT:
            this.verdictWaiter?.resolve(decodeVerdict(m));
            this.verdictWaiter = null;
            break;
          default:
            throw new NovaError("NOVA_DWCP_PROTOCOL", `Migration relay: unexpected control message ${m[0]}`);
        }
      }
    } catch (err) {
      this.fail(err);
    }
  }
}
