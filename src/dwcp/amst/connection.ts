/**
 * One transport connection of an AMST session (docs/dwcp.md §4.1): a TCP or TLS socket
 * after its handshake, with its frame decoder and write accounting. It knows nothing of
 * sequencing or channels; the session decides what to write where.
 */
import type { Socket } from "node:net";
import { NovaError } from "../../lib/errors.js";
import { FrameDecoder } from "../wire/decoder.js";
import { encodeHeader, type Frame } from "../wire/frame.js";

let nextConnectionId = 1;

/** Callbacks from a connection to its session. */
export interface ConnectionEvents {
  frame(conn: Connection, frame: Frame): void;
  /** Called once when the connection ends for any reason; `err` is null for an orderly end. */
  closed(conn: Connection, err: Error | null): void;
  drain(conn: Connection): void;
}

/** Per-connection bounds against a peer that does not read or floods control frames. */
export interface ConnectionLimits {
  /** Past this many bytes in the user-space send queue the connection is dropped. */
  maxQueuedBytes: number;
  /** Sustained PINGs per second the peer may send. */
  pingsPerSecond: number;
  /** PING burst the peer may send. */
  pingBurst: number;
}

/** Defaults of ConnectionLimits (session-config.ts has the same as tunables). */
export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  maxQueuedBytes: 32 * 1024 * 1024,
  pingsPerSecond: 20,
  pingBurst: 40,
};

/** A handshaken socket carrying frames. */
export class Connection {
  readonly id = nextConnectionId++;
  /** No new frames are assigned; it closes once its frames are acknowledged. */
  draining = false;
  /** Bytes written to this connection (headers included). */
  bytesWritten = 0;
  /** Bytes read from this connection. */
  bytesRead = 0;
  /** bytesRead when we last acknowledged on this connection. */
  bytesReadAcked = -1;
  /** Bytes the peer says it has read from this connection (from its ACKs). */
  peerRead = 0;
  /** Delivery rate of this connection, bytes/s (EWMA), 0 until measured. */
  rate = 0;
  private rateMark = { at: 0, bytes: 0 };
  private readonly decoder: FrameDecoder;
  private done = false;
  /** PING token bucket: tokens left and when it was last refilled. */
  private pingTokens: number;
  private pingRefilledAt = performance.now();

  constructor(
    readonly socket: Socket,
    maxPayload: number,
    private readonly events: ConnectionEvents,
    rest: Buffer,
    private readonly limits: ConnectionLimits = DEFAULT_CONNECTION_LIMITS,
  ) {
    this.pingTokens = limits.pingBurst;
    this.decoder = new FrameDecoder({ maxPayload });
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("drain", () => this.events.drain(this));
    socket.on("error", (err) => this.finish(err));
    socket.on("close", () => this.finish(null));
    socket.on("end", () => socket.end());
    if (rest.length > 0) queueMicrotask(() => this.onData(rest));
    socket.resume();
  }

  /** True until the socket closed or was destroyed. */
  get alive(): boolean {
    return !this.done && !this.socket.destroyed;
  }

  /** Bytes queued in user space waiting for the kernel: the connection's load. */
  get queuedBytes(): number {
    return this.socket.writableLength;
  }

  /** Bytes written here that the peer has not read yet: in our queue, the kernel, or the network. */
  get inflight(): number {
    return this.bytesWritten - this.peerRead;
  }

  /**
   * How many bytes may be in flight on this connection: about 2.5 times what it delivers
   * per RTT (room for TCP to grow its window), at least 256 KiB, 1 MiB before it is measured.
   * Without a cap, frames pile into one socket's multi-megabyte kernel buffer and the
   * in-order receiver waits seconds for them while the other streams idle.
   */
  sendCap(rttMs: number): number {
    if (this.rate === 0) return 1024 * 1024;
    return Math.max(256 * 1024, (this.rate * Math.max(rttMs, 5) * 2.5) / 1000);
  }

  /** Records the peer's read counter for this connection and updates the delivery rate. */
  notePeerRead(bytes: number, now: number): void {
    if (bytes <= this.peerRead) return;
    this.peerRead = Math.min(bytes, this.bytesWritten);
    if (this.rateMark.at === 0) {
      this.rateMark = { at: now, bytes: this.peerRead };
      return;
    }
    const dt = now - this.rateMark.at;
    if (dt < 50) return;
    const sample = ((this.peerRead - this.rateMark.bytes) * 1000) / dt;
    this.rate = this.rate === 0 ? sample : 0.7 * this.rate + 0.3 * sample;
    this.rateMark = { at: now, bytes: this.peerRead };
  }

  /**
   * Takes one PING from the peer's allowance (token bucket); false when the peer exceeded
   * it. Answering every PING would let a peer that floods them and never reads the PONGs
   * grow our send queue without bound.
   */
  takePing(now = performance.now()): boolean {
    const refill = ((now - this.pingRefilledAt) / 1000) * this.limits.pingsPerSecond;
    this.pingTokens = Math.min(this.limits.pingBurst, this.pingTokens + refill);
    this.pingRefilledAt = now;
    if (this.pingTokens < 1) return false;
    this.pingTokens -= 1;
    return true;
  }

  /**
   * Writes one frame (header and payload without copying). A connection whose send queue
   * would pass `maxQueuedBytes` is dropped instead: its peer does not read.
   */
  write(frame: Frame): void {
    if (!this.alive) return;
    if (this.socket.writableLength + frame.payload.length > this.limits.maxQueuedBytes) {
      this.destroy(
        new NovaError(
          "NOVA_DWCP_CONNECTION",
          `The DWCP peer does not read: over ${this.limits.maxQueuedBytes} bytes queued on one connection`,
          { details: { queued: this.socket.writableLength, limit: this.limits.maxQueuedBytes } },
        ),
      );
      return;
    }
    const header = encodeHeader(frame);
    this.socket.cork();
    this.socket.write(header);
    if (frame.payload.length > 0) this.socket.write(frame.payload);
    this.socket.uncork();
    this.bytesWritten += header.length + frame.payload.length;
  }

  /** Ends the connection after queued bytes are flushed. */
  end(): void {
    if (this.alive) this.socket.end();
  }

  /** Closes the connection at once; `err` is reported to the session. */
  destroy(err?: Error): void {
    if (err) this.finish(err);
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    if (this.done) return;
    this.bytesRead += chunk.length;
    let frames: Frame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.destroy(err as NovaError);
      return;
    }
    for (const f of frames) {
      if (this.done) return;
      this.events.frame(this, f);
    }
  }

  private finish(err: Error | null): void {
    if (this.done) return;
    this.done = true;
    this.socket.destroy();
    this.events.closed(this, err);
  }
}
