/**
 * The sender half of AMST reliability and flow control (docs/dwcp.md §4.3). Owns
 * sequence numbering, the queue of frames not yet written, the frames written but not
 * yet acknowledged (kept for resending), and the peer's credit.
 *
 * Two acknowledgements, two jobs:
 * - `receivedThrough` frees retained frames: the peer holds everything up to it.
 * - `consumedBytes` returns credit: the peer's application has taken those bytes, so the
 *   peer's memory for them is free. Sender credit = window - (sequenced - consumed).
 * Splitting them keeps a slow consumer from looking like a stalled connection.
 *
 * Frames wait for a connection in priority classes (the channel's, docs/dwcp.md §4.6):
 * resends first, then urgent, normal, bulk, and last the session's CLOSE. Within a class
 * the order is the sequence order, so each channel's frames leave in order; the receiver
 * delivers by channel order (channel-order.ts), so a frame sent ahead of lower-class
 * frames sequenced before it is delivered at once.
 */
import { type Frame, wireSize } from "../wire/frame.js";

/** Anything that frames can be assigned to; only identity matters here. */
export interface Carrier {
  readonly id: number;
}

/** A sequenced frame on its way to the peer. */
export interface Outgoing {
  frame: Frame;
  size: number;
  /** The connection it was last written to, or null while queued. */
  carrier: Carrier | null;
  /** When it was last written (ms, monotonic), or 0. */
  sentAt: number;
  /** Times it has been written. */
  transmissions: number;
  /** Its priority class (index into SEND_CLASSES). */
  priority: number;
}

/** Send priority classes, first to last. */
export const SEND_CLASSES = ["urgent", "normal", "bulk", "last"] as const;
export type SendClass = (typeof SEND_CLASSES)[number];
/** The classes a channel may ask for ("last" is the session's CLOSE). */
export type ChannelPriority = Exclude<SendClass, "last">;
/** The class index of a channel's frames unless it asked for another. */
export const NORMAL_PRIORITY = SEND_CLASSES.indexOf("normal");

/** Sequencing, retention, resend queue and credit for one direction of a session. */
export class SendWindow {
  private nextSeq = 1;
  /** Frames of a broken connection to write again, by sequence number: before any class. */
  private readonly resend: Outgoing[] = [];
  /** Frames not written yet, one FIFO per priority class. */
  private readonly queues: Outgoing[][] = SEND_CLASSES.map(() => []);
  private queuedFrames = 0;
  private readonly inflight = new Map<number, Outgoing>();
  private sequencedBytes = 0;
  private peerConsumed = 0;
  private ackedThroughValue = 0;
  private lastProgress: number;

  /** @param windowBytes credit the peer grants (its receive window). */
  constructor(
    public windowBytes: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.lastProgress = now();
  }

  /** Highest sequence number the peer has confirmed receiving (with all before it). */
  get ackedThrough(): number {
    return this.ackedThroughValue;
  }

  /** Bytes sequenced but not yet consumed by the peer: what counts against the window. */
  get outstandingBytes(): number {
    return this.sequencedBytes - this.peerConsumed;
  }

  /** Total wire bytes of frames ever sequenced. */
  get sequencedTotal(): number {
    return this.sequencedBytes;
  }

  /** Total wire bytes of sequenced frames the peer has consumed. */
  get peerConsumedBytes(): number {
    return this.peerConsumed;
  }

  /** Frames waiting to be written. */
  get queuedCount(): number {
    return this.queuedFrames;
  }

  /** Frames written and not yet acknowledged as received. */
  get inflightCount(): number {
    return this.inflight.size;
  }

  /** Time of the last acknowledgement progress. */
  get lastProgressAt(): number {
    return this.lastProgress;
  }

  /** Restarts the stall clock (used when the local event loop, not the peer, was late). */
  noteProgress(): void {
    this.lastProgress = this.now();
  }

  /** True when `size` more bytes fit in the peer's credit. */
  hasRoom(size: number): boolean {
    return this.outstandingBytes + size <= this.windowBytes;
  }

  /** Assigns the next sequence number to `frame` and queues it for writing in class `priority`. */
  enqueue(frame: Omit<Frame, "seq">, priority = NORMAL_PRIORITY): Outgoing {
    const full: Frame = { ...frame, seq: this.nextSeq++ };
    const out: Outgoing = {
      frame: full,
      size: wireSize(full),
      carrier: null,
      sentAt: 0,
      transmissions: 0,
      priority,
    };
    this.sequencedBytes += out.size;
    this.queues[priority]!.push(out);
    this.queuedFrames++;
    return out;
  }

  /** The queue the next frame to write comes from. */
  private head(): Outgoing[] | undefined {
    if (this.resend.length > 0) return this.resend;
    return this.queues.find((q) => q.length > 0);
  }

  /** The next frame to write, or undefined. */
  peek(): Outgoing | undefined {
    return this.head()?.[0];
  }

  /** Marks the next frame to write (peek()) as written to `carrier`. */
  markSent(carrier: Carrier): Outgoing {
    const out = this.head()?.shift();
    if (out === undefined) throw new Error("markSent on an empty queue");
    this.queuedFrames--;
    out.carrier = carrier;
    out.sentAt = this.now();
    out.transmissions += 1;
    this.inflight.set(out.frame.seq, out);
    return out;
  }

  /** Applies an acknowledgement; returns how many retained frames were released. */
  onAck(receivedThrough: number, consumedBytes: number): number {
    let released = 0;
    if (consumedBytes > this.peerConsumed) this.peerConsumed = Math.min(consumedBytes, this.sequencedBytes);
    if (receivedThrough > this.ackedThroughValue) {
      for (let s = this.ackedThroughValue + 1; s <= receivedThrough; s++) {
        if (this.inflight.delete(s)) released++;
      }
      // A frame can be acknowledged while queued for a resend: drop it from the queue too
      // (only a frame written before can have arrived).
      if (this.resend.length > 0 && this.resend[0]!.frame.seq <= receivedThrough) {
        const keep = this.resend.filter((o) => o.frame.seq > receivedThrough);
        this.queuedFrames -= this.resend.length - keep.length;
        this.resend.length = 0;
        this.resend.push(...keep);
      }
      this.ackedThroughValue = receivedThrough;
      this.lastProgress = this.now();
    }
    return released;
  }

  /**
   * Moves every unacknowledged frame last written to `carrier` to the resend queue (ahead
   * of every class), in sequence order, so it is resent on another connection. Returns the count.
   */
  requeueFrom(carrier: Carrier): number {
    const back: Outgoing[] = [];
    for (const [seq, out] of this.inflight) {
      if (out.carrier === carrier) {
        this.inflight.delete(seq);
        out.carrier = null;
        back.push(out);
      }
    }
    if (back.length === 0) return 0;
    const merged = [...back, ...this.resend].sort((a, b) => a.frame.seq - b.frame.seq);
    this.resend.length = 0;
    this.resend.push(...merged);
    this.queuedFrames += back.length;
    return back.length;
  }

  /** Unacknowledged frames currently written to `carrier`. */
  inflightOn(carrier: Carrier): number {
    let n = 0;
    for (const out of this.inflight.values()) if (out.carrier === carrier) n++;
    return n;
  }

  /** The written frame with the lowest unacknowledged sequence number, if any. */
  oldestInflight(): Outgoing | undefined {
    const seq = this.ackedThroughValue + 1;
    return this.inflight.get(seq);
  }
}
