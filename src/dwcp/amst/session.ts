/**
 * An AMST session (docs/dwcp.md §4): one logical, reliable, multiplexed conversation
 * carried by one (v1) or several (v3) connections. Owns striping sequenced frames over
 * the connections, delivery in each channel's own order (reorder buffer and
 * channel-order.ts), acknowledgements and credit, resending what a broken or stalled
 * connection carried, RTT probes, and orderly close. The connection set itself (draining,
 * redialing, the orphan deadline) is stream-pool.ts; the session's states and their moves
 * are session-state.ts, and every move goes through `transition`. Channels (channel.ts)
 * ride on top; connection establishment lives in dial.ts / listen.ts.
 */
import type { Socket } from "node:net";
import { NovaError } from "../../lib/errors.js";
import { decodeAck, encodeAck } from "../wire/ack.js";
import { FRAME_HEADER_BYTES, type Frame, FrameType, isChannelOrdered, wireSize } from "../wire/frame.js";
import { Capability, type DwcpVersion } from "../wire/handshake.js";
import { Channel, type ChannelHost } from "./channel.js";
import { ChannelOrder } from "./channel-order.js";
import type { Connection } from "./connection.js";
import { ReorderBuffer } from "./reorder.js";
import { RttEstimator } from "./rtt.js";
import { type ChannelPriority, NORMAL_PRIORITY, SEND_CLASSES, SendWindow } from "./send-window.js";
import type { SessionParams, SessionStats, SessionTuning } from "./session-config.js";
import { SESSION, type SessionState } from "./session-state.js";
import { StreamPool } from "./stream-pool.js";

/** A DWCP session; get one from `dialSession` or a `DwcpListener`. */
export class DwcpSession {
  readonly version: DwcpVersion;
  readonly capabilities: number;
  readonly sessionId: Buffer;
  readonly role: "dialer" | "listener";
  /** Resolves when the session ends: null after an orderly close, the error otherwise. */
  readonly closed: Promise<Error | null>;

  private current: SessionState = "open";
  private readonly tuning: SessionTuning;
  private readonly pool: StreamPool;
  private readonly window: SendWindow;
  private readonly reorder: ReorderBuffer<Frame>;
  private readonly channelOrder = new ChannelOrder<Frame>();
  private readonly channels = new Map<number, Channel>();
  private nextChannelId: number;
  private peerNextChannelId: number;
  private readonly incoming: Channel[] = [];
  private acceptWaiter: { resolve: (c: Channel) => void; reject: (e: Error) => void } | null = null;
  /** Producers waiting for the peer's credit, in priority class order, FIFO within a class. */
  private roomWaiters: { size: number; priority: number; resolve: () => void; reject: (e: Error) => void }[] =
    [];
  /** Send priority class of each channel that asked for one other than normal. */
  private readonly channelPriority = new Map<number, number>();
  private unconsumed = 0;
  private consumedTotal = 0;
  /** Wire bytes of distinct sequenced frames received, in order or not. */
  private receivedUnique = 0;
  /** The peer's receivedUnique, from its ACKs. */
  private peerReceivedUnique = 0;
  private ackPending = 0;
  private ackTimer: NodeJS.Timeout | null = null;
  private readonly timers: NodeJS.Timeout[] = [];
  private resolveClosed!: (e: Error | null) => void;
  private failure: Error | null = null;
  private closeSentAcked = false;
  private closeSeq = 0;
  private peerClosed = false;
  private readonly rtt: RttEstimator;
  private lastYield = 0;
  private probeBytes = 0;
  private lastStallCheck = 0;
  private ackedBytes = 0;
  private resent = 0;
  private readonly sentSizes = new Map<number, number>();
  private readonly hostApi: ChannelHost;
  private readonly peerMaxPayload: number;
  private framePayload: number;
  private readonly peerChannelWindow: number;
  /** Channels waiting for their own credit (not the session's). */
  private channelCreditWaiters = 0;

  constructor(params: SessionParams) {
    this.version = params.version;
    this.capabilities = params.capabilities;
    this.sessionId = params.sessionId;
    this.role = params.role;
    this.tuning = params.tuning;
    this.rtt = new RttEstimator(params.handshakeRttMs);
    this.nextChannelId = params.role === "dialer" ? 1 : 2;
    this.peerNextChannelId = params.role === "dialer" ? 2 : 1;
    this.window = new SendWindow(Math.min(params.peerWindowBytes, 0xffffffff));
    this.pool = new StreamPool(
      {
        maxPayload: this.tuning.maxPayload,
        connectionHighWater: this.tuning.connectionHighWater,
        reconnectTimeoutMs: this.tuning.reconnectTimeoutMs,
        // Only the dialer dials; a listener waits for the dialer's JOINs.
        redial: params.role === "dialer" ? params.redial : undefined,
        inflightOn: (c) => this.window.inflightOn(c),
        limits: {
          maxQueuedBytes: this.tuning.maxConnectionQueueBytes,
          pingsPerSecond: this.tuning.peerPingsPerSecond,
          pingBurst: this.tuning.peerPingBurst,
        },
      },
      {
        frame: (c, f) => this.onFrame(c, f),
        added: () => {
          this.pump();
          // Acknowledge at once: the peer may be waiting to learn what the lost connection delivered.
          this.sendAck();
        },
        closed: (c, err) => this.onConnectionClosed(c, err),
        drain: () => this.pump(),
        orphaned: () =>
          this.fail(
            new NovaError(
              "NOVA_DWCP_CONNECTION",
              `The DWCP session lost all connections and none came back within ${this.tuning.reconnectTimeoutMs} ms`,
            ),
          ),
      },
    );
    this.peerChannelWindow = Math.floor((Math.min(params.peerWindowBytes, 0xffffffff) * 3) / 4);
    const peerMaxPayload = Math.min(params.peerMaxPayload, this.tuning.maxPayload * 64);
    this.reorder = new ReorderBuffer<Frame>({
      maxAheadFrames: Math.max(1024, Math.ceil(this.tuning.windowBytes / 64) + 64),
      maxBytes: this.tuning.windowBytes + 2 * (this.tuning.maxPayload + 1024),
    });
    this.closed = new Promise((resolve) => {
      this.resolveClosed = resolve;
    });
    this.peerMaxPayload = peerMaxPayload;
    this.framePayload = peerMaxPayload;
    const self = this;
    this.hostApi = {
      get peerMaxPayload() {
        return self.framePayload;
      },
      maxMessageBytes: this.tuning.maxMessageBytes,
      waitRoom: (size, channel) => this.waitRoom(size, this.priorityOf(channel)),
      enqueue: (frame) => this.enqueue(frame),
      consumed: (bytes) => this.onConsumed(bytes),
      // Three quarters of the window each: one stalled channel never holds all of the
      // session's credit, and a lone channel still gets most of it.
      peerChannelWindow: this.peerChannelWindow,
      channelWindow: Math.floor((this.tuning.windowBytes * 3) / 4),
      creditWaiting: (delta) => {
        this.channelCreditWaiters += delta;
      },
      protocolViolation: (err) => this.fail(err),
      finished: (id) => {
        this.channels.delete(id);
        this.channelPriority.delete(id);
      },
      sendDigestKey:
        params.role === "dialer" ? params.keys.digestDialerToListener : params.keys.digestListenerToDialer,
      recvDigestKey:
        params.role === "dialer" ? params.keys.digestListenerToDialer : params.keys.digestDialerToListener,
    };
    const every = (ms: number, fn: () => void): void => {
      const t = setInterval(fn, ms);
      t.unref();
      this.timers.push(t);
    };
    every(this.stallCheckInterval(), () => this.checkStall());
    every(this.tuning.pingIntervalMs, () => {
      this.ping();
      // A CREDIT that found no connection (all were being replaced) goes out now.
      if ([...this.channels.values()].some((c) => c.creditPending)) this.sendAck();
    });
  }

  /** How often stalls and unread peers are checked (ms). */
  private stallCheckInterval(): number {
    return Math.max(
      50,
      Math.floor(Math.min(this.tuning.stallTimeoutMs, this.tuning.peerUnreadTimeoutMs) / 4),
    );
  }

  /** The session's state (session-state.ts). */
  get state(): SessionState {
    return this.current;
  }

  /** True while the session can carry data. */
  get isOpen(): boolean {
    return this.current === "open";
  }

  /** True when the negotiated capabilities include `cap`. */
  has(cap: number): boolean {
    return (this.capabilities & cap) === cap;
  }

  /** Number of live connections. */
  get streamCount(): number {
    return this.pool.size;
  }

  /**
   * @internal Adds a handshaken connection (first one or a JOIN); destroys it once the
   * session has ended.
   */
  addConnection(socket: Socket, rest: Buffer): void {
    this.pool.add(socket, rest);
  }

  /**
   * Opens a new logical channel; the peer receives it from `accept()`. `priority` is the
   * class its frames are sent in when several channels have data queued (docs/dwcp.md §4.6).
   */
  openChannel(label: string, opts: { priority?: ChannelPriority } = {}): Channel {
    this.assertOpen();
    if (this.channels.size >= this.tuning.maxOpenChannels) {
      throw new NovaError(
        "NOVA_BAD_REQUEST",
        `This DWCP session has ${this.channels.size} channels open, its limit (maxOpenChannels)`,
      );
    }
    const id = this.nextChannelId;
    if (id > 0xffff) throw new NovaError("NOVA_DWCP_CLOSED", "This session has used all its channel numbers");
    this.nextChannelId += 2;
    const ch = new Channel(id, label, this.hostApi);
    this.channels.set(id, ch);
    if (opts.priority && opts.priority !== "normal")
      this.channelPriority.set(id, SEND_CLASSES.indexOf(opts.priority));
    this.enqueue({ type: FrameType.OPEN, flags: 0, channel: id, payload: Buffer.from(label, "utf8") });
    return ch;
  }

  /** Resolves with the next channel the peer opens; rejects when the session ends. */
  accept(): Promise<Channel> {
    const ch = this.incoming.shift();
    if (ch) return Promise.resolve(ch);
    if (this.current !== "open")
      return Promise.reject(this.failure ?? new NovaError("NOVA_DWCP_CLOSED", "The DWCP session is closed"));
    return new Promise((resolve, reject) => {
      this.acceptWaiter = { resolve, reject };
    });
  }

  /** A snapshot of transport statistics. */
  stats(): SessionStats {
    return {
      streams: this.pool.size,
      srttMs: this.rtt.srtt,
      minRttMs: this.rtt.min,
      bytesAcked: this.ackedBytes,
      bytesReceived: Math.max(this.peerReceivedUnique, this.ackedBytes),
      bytesWritten: this.pool.bytesWritten,
      probeBytes: this.probeBytes,
      framesResent: this.resent,
      connectionsReplaced: this.pool.connectionsReplaced,
      outstandingBytes: this.window.outstandingBytes,
      backlogged:
        this.window.queuedCount > 0 ||
        (this.roomWaiters.length > 0 &&
          this.window.sequencedTotal - this.ackedBytes >= this.window.windowBytes / 2) ||
        // A channel at its own credit limit is network-bound the same way when most of
        // that credit has not even reached the peer.
        (this.channelCreditWaiters > 0 &&
          this.window.sequencedTotal - this.ackedBytes >= this.peerChannelWindow / 2),
      creditLimited: this.roomWaiters.length > 0 || this.channelCreditWaiters > 0,
    };
  }

  /**
   * Dialer only: sets how many connections the session should keep. More are dialed at
   * once; surplus ones drain (no new frames) and close when all they carry is acknowledged.
   */
  async setStreamCount(n: number): Promise<void> {
    if (this.version === 1 || !this.has(Capability.MULTI_STREAM)) return;
    // A no-op on the listener side: its pool cannot dial.
    await this.pool.setTarget(n);
  }

  /**
   * Sets the DATA payload size used from now on (the mode's frame size), capped by what
   * the peer accepts. Smaller frames spread better over many lossy streams; larger ones
   * cost less CPU per byte on fast links.
   */
  setFramePayload(bytes: number): void {
    this.framePayload = Math.max(4096, Math.min(this.peerMaxPayload, Math.floor(bytes)));
  }

  /**
   * Capacity probe (docs/dwcp.md §9.1): writes `bytes` of PAD frames across the live
   * connections and times how fast the peer reads them (per-connection ACK counters).
   * Resolves with bytes/s, or null when it could not measure within `timeoutMs`. PAD
   * frames cost the receiver only a CRC, so on a fast link this measures the path, not
   * our own encoding speed; on a long path TCP slow start makes it an underestimate.
   */
  async probeCapacity(bytes = 2 * 1024 * 1024, timeoutMs = 3000): Promise<number | null> {
    // PAD is part of the PROBE capability: a v1 peer never negotiated it.
    if (this.version === 1 || !this.has(Capability.PROBE)) return null;
    const conns = this.pool.sending();
    if (conns.length === 0 || this.current !== "open") return null;
    const size = Math.min(this.peerMaxPayload, 256 * 1024);
    const pad = Buffer.alloc(size);
    const start = new Map(conns.map((c) => [c, c.peerRead]));
    const target = new Map(conns.map((c) => [c, c.bytesWritten]));
    const t0 = performance.now();
    for (let sent = 0, i = 0; sent < bytes; sent += size, i++) {
      const c = conns[i % conns.length]!;
      c.write({ type: FrameType.PAD, flags: 0, channel: 0, seq: 0, payload: pad });
      this.probeBytes += pad.length + FRAME_HEADER_BYTES;
    }
    for (const c of conns) target.set(c, c.bytesWritten);
    const deadline = t0 + timeoutMs;
    while (performance.now() < deadline && this.current === "open") {
      if (conns.every((c) => !c.alive || c.peerRead >= target.get(c)!)) break;
      await new Promise((r) => setTimeout(r, 2));
    }
    const elapsed = performance.now() - t0;
    let got = 0;
    for (const c of conns) got += Math.max(0, c.peerRead - start.get(c)!);
    if (got < bytes / 2 || elapsed <= 0) return null;
    return (got * 1000) / elapsed;
  }

  /** Test hook: the live connections' sockets, to break them on purpose. */
  connectionSockets(): Socket[] {
    return this.pool.sockets();
  }

  /**
   * Orderly close: sends CLOSE after everything queued, waits until the peer confirmed it
   * (or closeTimeoutMs), then closes the connections.
   */
  async close(): Promise<void> {
    if (this.current === "open") this.startClosing();
    const err = await this.closed;
    if (err) throw err;
  }

  /** Ends the session at once with `err` (also sent to the peer as ERROR). */
  destroy(err: Error = new NovaError("NOVA_DWCP_CLOSED", "The DWCP session was destroyed")): void {
    this.fail(err, true);
  }

  // ---- state ------------------------------------------------------------------------

  /** The one place the state changes; throws NOVA_ILLEGAL_STATE for a move session-state.ts does not list. */
  private transition(to: SessionState): void {
    SESSION.assertTransition(`DWCP session ${this.sessionId.toString("hex")}`, this.current, to);
    this.current = to;
  }

  /** True once the session has ended (closed or failed): nothing is sent or delivered. */
  private get ended(): boolean {
    return SESSION.isFinal(this.current);
  }

  /** open → closing: CLOSE goes out after everything queued; the close timer starts. */
  private startClosing(): void {
    this.transition("closing");
    this.closeSeq = this.enqueue({ type: FrameType.CLOSE, flags: 0, channel: 0, payload: Buffer.alloc(0) });
    const t = setTimeout(() => this.teardown(null), this.tuning.closeTimeoutMs);
    t.unref();
    this.timers.push(t);
  }

  // ---- sending ----------------------------------------------------------------------

  private assertOpen(): void {
    if (this.current !== "open") {
      throw this.failure ?? new NovaError("NOVA_DWCP_CLOSED", "The DWCP session is closed");
    }
  }

  private priorityOf(channel: number): number {
    return this.channelPriority.get(channel) ?? NORMAL_PRIORITY;
  }

  private enqueue(frame: Omit<Frame, "seq">): number {
    if (this.ended) return 0;
    if (isChannelOrdered(frame.type)) frame.chseq = this.channelOrder.nextSend(frame.channel);
    // The session's CLOSE follows everything queued, whatever its class.
    const priority =
      frame.type === FrameType.CLOSE ? SEND_CLASSES.indexOf("last") : this.priorityOf(frame.channel);
    const out = this.window.enqueue(frame, priority);
    this.sentSizes.set(out.frame.seq, out.size);
    this.pump();
    return out.frame.seq;
  }

  private waitRoom(size: number, priority: number): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.current !== "open")
      return Promise.reject(new NovaError("NOVA_DWCP_CLOSED", "The DWCP session is closed"));
    if (this.roomWaiters.length === 0 && this.window.hasRoom(size)) {
      // A producer whose sends always find credit would otherwise chain resolved promises
      // and never let the event loop read ACKs, answer PINGs or run timers: yield now and
      // then so that I/O keeps flowing however fast the producer is.
      const now = performance.now();
      if (now - this.lastYield < 10) return Promise.resolve();
      this.lastYield = now;
      return new Promise((resolve) => setImmediate(resolve));
    }
    return new Promise((resolve, reject) => {
      const at = this.roomWaiters.findIndex((w) => w.priority > priority);
      const w = { size, priority, resolve, reject };
      if (at < 0) this.roomWaiters.push(w);
      else this.roomWaiters.splice(at, 0, w);
    });
  }

  private wakeRoomWaiters(): void {
    // Each waiter enqueues right after it resumes, so grant credit one waiter at a time
    // and account for what earlier grants will use.
    let reserved = 0;
    while (this.roomWaiters.length > 0) {
      const w = this.roomWaiters[0]!;
      if (!this.window.hasRoom(reserved + w.size)) break;
      reserved += w.size;
      this.roomWaiters.shift();
      w.resolve();
    }
  }

  private pump(): void {
    if (this.ended) return;
    for (;;) {
      const head = this.window.peek();
      if (!head) break;
      const conn = this.pool.pickForSend(this.rtt.srtt ?? 50);
      if (!conn) break;
      const out = this.window.markSent(conn);
      if (out.transmissions > 1) this.resent++;
      conn.write(out.frame);
    }
  }

  private sendAck(): void {
    if (this.ackTimer) {
      clearTimeout(this.ackTimer);
      this.ackTimer = null;
    }
    const main = this.pool.leastQueued();
    if (!main) return;
    this.ackPending = 0;
    // Every connection that carried data since its last ACK gets one, with its own read
    // counter: that is how the sender learns each connection's in-flight bytes and rate.
    for (const c of this.pool) {
      if (!c.alive || (c !== main && c.bytesRead === c.bytesReadAcked)) continue;
      c.bytesReadAcked = c.bytesRead;
      const payload = encodeAck({
        receivedThrough: this.reorder.receivedThrough,
        consumedBytes: this.consumedTotal,
        receivedBytes: this.receivedUnique,
        connectionBytesRead: c.bytesRead,
      });
      c.write({ type: FrameType.ACK, flags: 0, channel: 0, seq: 0, payload });
    }
    this.sendCredits(main);
  }

  /** Reports each channel's newly consumed bytes to the peer (channel credit). */
  private sendCredits(conn: Connection): void {
    for (const ch of this.channels.values()) {
      const total = ch.takeCredit();
      if (total === null) continue;
      const payload = Buffer.allocUnsafe(8);
      payload.writeBigUInt64BE(BigInt(total), 0);
      conn.write({ type: FrameType.CREDIT, flags: 0, channel: ch.id, seq: 0, payload });
    }
  }

  private scheduleAck(bytes: number): void {
    this.ackPending += bytes;
    if (this.ackPending >= this.tuning.ackEveryBytes) {
      this.sendAck();
    } else if (!this.ackTimer) {
      this.ackTimer = setTimeout(() => {
        this.ackTimer = null;
        this.sendAck();
      }, this.tuning.ackDelayMs);
    }
  }

  private ping(): void {
    if (this.current !== "open" || !this.has(Capability.PROBE)) return;
    // Probe the least loaded connection: the RTT then includes only the queueing every
    // frame sees in the network, not a backlog in our own user-space queue.
    const conn = this.pool.leastQueued();
    if (!conn) return;
    const payload = Buffer.allocUnsafe(8);
    payload.writeDoubleBE(performance.now(), 0);
    conn.write({ type: FrameType.PING, flags: 0, channel: 0, seq: 0, payload });
  }

  // ---- receiving --------------------------------------------------------------------

  private onFrame(conn: Connection, frame: Frame): void {
    if (this.ended) return;
    switch (frame.type) {
      case FrameType.ACK:
        this.onAck(conn, frame);
        return;
      case FrameType.PING:
        // Rate-limited: our own prober sends one per pingIntervalMs per session; a peer
        // far above that is flooding, and its session ends (docs/dwcp.md §3.3).
        if (!conn.takePing()) {
          this.fail(
            new NovaError(
              "NOVA_DWCP_PROTOCOL",
              `The DWCP peer sent PINGs faster than ${this.tuning.peerPingsPerSecond}/s on one connection`,
            ),
          );
          return;
        }
        conn.write({ type: FrameType.PONG, flags: 0, channel: 0, seq: 0, payload: frame.payload });
        return;
      case FrameType.PONG:
        this.onPong(frame);
        return;
      case FrameType.PAD:
        // Counted in the connection's bytesRead, acknowledged like data; nothing else.
        this.scheduleAck(wireSize(frame));
        return;
      case FrameType.CREDIT:
        if (frame.payload.length !== 8) {
          this.fail(new NovaError("NOVA_DWCP_PROTOCOL", "Malformed CREDIT frame"));
          return;
        }
        // A channel already finished needs no more credit.
        this.channels.get(frame.channel)?.onCredit(Number(frame.payload.readBigUInt64BE(0)));
        return;
      case FrameType.ERROR:
        this.fail(
          new NovaError(
            "NOVA_DWCP_CONNECTION",
            `The DWCP peer ended the session: ${frame.payload.toString("utf8").slice(0, 500)}`,
          ),
        );
        return;
      default:
        this.onSequenced(frame);
        return;
    }
  }

  private onAck(conn: Connection, frame: Frame): void {
    const ack = decodeAck(frame.payload);
    if (!ack) {
      this.fail(new NovaError("NOVA_DWCP_PROTOCOL", "Malformed ACK frame"));
      return;
    }
    const { receivedThrough: through, consumedBytes: consumed } = ack;
    if (ack.receivedBytes > this.peerReceivedUnique) this.peerReceivedUnique = ack.receivedBytes;
    conn.notePeerRead(ack.connectionBytesRead, performance.now());
    const before = this.window.ackedThrough;
    if (through > before) {
      for (let s = before + 1; s <= through; s++) {
        const size = this.sentSizes.get(s);
        if (size === undefined) {
          this.fail(new NovaError("NOVA_DWCP_PROTOCOL", `ACK for frame ${through} that was never sent`));
          return;
        }
        this.ackedBytes += size;
        this.sentSizes.delete(s);
      }
    }
    this.window.onAck(through, consumed);
    if (this.closeSeq > 0 && this.window.ackedThrough >= this.closeSeq) this.closeSentAcked = true;
    this.pool.retireIdle();
    this.wakeRoomWaiters();
    this.pump();
    this.maybeFinishClose();
  }

  private onPong(frame: Frame): void {
    if (frame.payload.length !== 8) return;
    this.rtt.sample(performance.now() - frame.payload.readDoubleBE(0));
  }

  private onSequenced(frame: Frame): void {
    const size = wireSize(frame);
    let early: Frame[] = [];
    try {
      if (this.reorder.accept(frame.seq, frame, size) === "duplicate") {
        this.scheduleAck(size);
        return;
      }
      this.receivedUnique += size;
      const held = this.reorder.heldBytes + this.unconsumed;
      if (held > this.tuning.windowBytes + 2 * (this.tuning.maxPayload + 1024)) {
        throw new NovaError(
          "NOVA_DWCP_PROTOCOL",
          `The peer sent ${held} unconsumed bytes, beyond the window`,
        );
      }
      // Channel frames go out in their channel's order, not the session's (§4.2).
      if (isChannelOrdered(frame.type))
        early = this.channelOrder.accept(
          frame.channel,
          frame.chseq ?? 0,
          frame,
          !this.awaitsOpen(frame.channel),
        );
    } catch (err) {
      this.fail(err as Error);
      return;
    }
    this.deliverEarly(early);
    for (const f of this.reorder.drain()) {
      if (this.ended) return;
      if (!isChannelOrdered(f.type)) {
        this.deliver(f);
        continue;
      }
      // Every frame before this one has arrived, so a well-behaved peer's channel frame
      // has been handed on by now (at the latest when its OPEN, earlier in this very
      // drain, was delivered). Still waiting means no OPEN or a skipped channel number.
      if (this.channelOrder.holds(f.channel, f.chseq ?? 0)) {
        this.fail(
          new NovaError(
            "NOVA_DWCP_PROTOCOL",
            `Frame ${f.chseq} of channel ${f.channel} came without its OPEN or an earlier frame of its channel`,
          ),
        );
        return;
      }
    }
    this.scheduleAck(size);
  }

  /** True for a channel the peer opens whose OPEN has not been delivered yet. */
  private awaitsOpen(id: number): boolean {
    return id >= this.peerNextChannelId && (id - this.peerNextChannelId) % 2 === 0;
  }

  private deliverEarly(frames: Frame[]): void {
    for (const f of frames) {
      if (this.ended) return;
      this.reorder.release(f.seq);
      this.deliver(f);
    }
  }

  private deliver(frame: Frame): void {
    const size = wireSize(frame);
    if (frame.type === FrameType.DATA) {
      const ch = this.channelFor(frame);
      this.unconsumed += size;
      if (ch) ch.onData(frame);
      else this.onConsumed(size);
      return;
    }
    this.consumedTotal += size;
    switch (frame.type) {
      case FrameType.OPEN: {
        const id = frame.channel;
        if (id !== this.peerNextChannelId) {
          this.fail(
            new NovaError(
              "NOVA_DWCP_PROTOCOL",
              `Peer opened channel ${id}, expected ${this.peerNextChannelId}`,
            ),
          );
          return;
        }
        if (this.channels.size >= this.tuning.maxOpenChannels) {
          // Each channel holds state (digests, queues) until both sides end it: a peer
          // opening channels without end would grow it without bound.
          this.fail(
            new NovaError(
              "NOVA_DWCP_PROTOCOL",
              `The DWCP peer opened more than ${this.tuning.maxOpenChannels} channels at once`,
            ),
          );
          return;
        }
        this.peerNextChannelId += 2;
        // Decode only the label's first bytes: a slice of a long string keeps all of it alive.
        const label = frame.payload.subarray(0, 1024).toString("utf8").slice(0, 256);
        const ch = new Channel(id, label, this.hostApi);
        this.channels.set(id, ch);
        if (this.acceptWaiter) {
          const w = this.acceptWaiter;
          this.acceptWaiter = null;
          w.resolve(ch);
        } else {
          this.incoming.push(ch);
        }
        // Its frames that arrived before the OPEN was delivered.
        this.deliverEarly(this.channelOrder.release(id));
        return;
      }
      case FrameType.END:
        this.channelFor(frame)?.onEnd(frame.payload);
        return;
      case FrameType.END_OK:
        this.channelFor(frame)?.onEndOk();
        return;
      case FrameType.ABORT:
        this.channelFor(frame)?.onAbort(frame.payload);
        return;
      case FrameType.CLOSE:
        this.onPeerClose();
        return;
    }
  }

  /** The channel a frame addresses; undefined for one already finished; fails on a bogus id. */
  private channelFor(frame: Frame): Channel | undefined {
    const ch = this.channels.get(frame.channel);
    if (ch) return ch;
    const ours = (frame.channel % 2 === 1) === (this.role === "dialer");
    const known = ours ? frame.channel < this.nextChannelId : frame.channel < this.peerNextChannelId;
    if (frame.channel === 0 || !known) {
      this.fail(
        new NovaError("NOVA_DWCP_PROTOCOL", `Frame for channel ${frame.channel}, which was never opened`),
      );
    }
    return undefined;
  }

  private onConsumed(bytes: number): void {
    this.unconsumed -= bytes;
    this.consumedTotal += bytes;
    this.scheduleAck(bytes);
  }

  private onPeerClose(): void {
    this.peerClosed = true;
    for (const ch of this.channels.values()) {
      ch.fail(
        new NovaError(
          "NOVA_DWCP_CLOSED",
          `The peer closed the session before channel "${ch.label}" finished`,
        ),
      );
    }
    if (this.current === "open") this.startClosing();
    this.sendAck();
    this.maybeFinishClose();
  }

  private maybeFinishClose(): void {
    if (this.current === "closing" && this.peerClosed && this.closeSentAcked) {
      this.sendAck();
      this.teardown(null);
    }
  }

  // ---- connections ------------------------------------------------------------------

  /** `conn` has already left the pool (which kept its written bytes). */
  private onConnectionClosed(conn: Connection, err: Error | null): void {
    if (this.ended) return;
    if (err instanceof NovaError && err.code === "NOVA_DWCP_PROTOCOL") {
      this.fail(err);
      return;
    }
    if (this.current === "closing" && this.peerClosed && this.closeSentAcked) return;
    if (this.version === 1 || !this.has(Capability.MULTI_STREAM)) {
      this.fail(
        new NovaError(
          "NOVA_DWCP_CONNECTION",
          `The DWCP v${this.version} connection was lost${err ? `: ${err.message}` : ""}`,
          {
            cause: err,
          },
        ),
      );
      return;
    }
    if (this.window.requeueFrom(conn) > 0) this.pump();
    this.pool.replaceLost(conn);
  }

  private checkStall(): void {
    if (this.ended) return;
    const now = performance.now();
    const interval = this.stallCheckInterval();
    const late = this.lastStallCheck > 0 && now - this.lastStallCheck > 2 * interval;
    this.lastStallCheck = now;
    if (late) {
      // Our own event loop was blocked: the missing ACKs may simply be unread. Restart the
      // clock instead of blaming a connection.
      this.window.noteProgress();
      return;
    }
    const oldest = this.window.oldestInflight();
    const unread = this.tuning.peerUnreadTimeoutMs;
    if (oldest && now - oldest.sentAt >= unread && now - this.window.lastProgressAt >= unread) {
      // Whatever the connection count: a peer that stopped reading holds our window and
      // queues; drop it rather than keep them forever.
      this.fail(
        new NovaError("NOVA_DWCP_CONNECTION", `The DWCP peer acknowledged nothing for ${unread} ms`, {
          details: { timeoutMs: unread },
        }),
      );
      return;
    }
    if (this.version === 1 || !this.has(Capability.MULTI_STREAM)) return;
    if (!oldest?.carrier) return;
    const limit = this.tuning.stallTimeoutMs;
    if (now - oldest.sentAt < limit || now - this.window.lastProgressAt < limit) return;
    const conn = this.pool.byId(oldest.carrier.id);
    // Replace only when another path exists or can be dialed; a lone listener-side
    // connection is better left to TCP than closed with nothing to take over.
    if (conn && (this.pool.size > 1 || this.role === "dialer")) {
      conn.destroy(
        new NovaError("NOVA_DWCP_CONNECTION", `Connection stalled for ${Math.round(now - oldest.sentAt)} ms`),
      );
    }
  }

  // ---- ending -----------------------------------------------------------------------

  private fail(err: Error, notifyPeer = true): void {
    if (this.ended) return;
    this.transition("failed");
    this.failure = err;
    if (notifyPeer) {
      for (const c of this.pool) {
        c.write({
          type: FrameType.ERROR,
          flags: 0,
          channel: 0,
          seq: 0,
          payload: Buffer.from(err.message.slice(0, 500)),
        });
      }
    }
    for (const ch of this.channels.values()) ch.fail(err);
    for (const w of this.roomWaiters.splice(0)) w.reject(err);
    this.acceptWaiter?.reject(err);
    this.acceptWaiter = null;
    this.stopTimers();
    this.pool.shutDown(notifyPeer ? "end" : "destroy");
    this.resolveClosed(err);
  }

  private teardown(err: Error | null): void {
    if (this.ended) return;
    if (!(this.peerClosed && this.closeSentAcked) && err === null) {
      err = new NovaError("NOVA_DWCP_CONNECTION", "The DWCP peer did not confirm the close in time");
      this.fail(err);
      return;
    }
    this.transition("closed");
    const closedErr = new NovaError("NOVA_DWCP_CLOSED", "The DWCP session is closed");
    for (const ch of this.channels.values()) ch.fail(closedErr);
    for (const w of this.roomWaiters.splice(0)) w.reject(closedErr);
    this.acceptWaiter?.reject(closedErr);
    this.acceptWaiter = null;
    this.stopTimers();
    this.pool.shutDown("end");
    this.resolveClosed(null);
  }

  private stopTimers(): void {
    for (const t of this.timers) {
      clearInterval(t);
      clearTimeout(t);
    }
    if (this.ackTimer) clearTimeout(this.ackTimer);
  }
}
