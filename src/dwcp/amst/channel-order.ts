/**
 * Per-channel delivery order (docs/dwcp.md §4.2). Frames of the channel-ordered types
 * (DATA, END, END_OK, ABORT) carry a sequence number of their own channel's direction;
 * the receiver hands one on as soon as every earlier frame of that channel has been,
 * whatever frames of other channels are still missing from the session's sequence. A
 * frame delayed on one TCP connection (loss, a congestion window shrunk while idle) then
 * holds up its own channel only: an NBD flush no longer waits behind the memory stream.
 * This module owns the counters on both sides and the frames held for their turn.
 */
import { NovaError } from "../../lib/errors.js";

interface Incoming<T> {
  /** The next channel sequence number to hand on. */
  next: number;
  /** Frames that arrived before their turn, by channel sequence number. */
  held: Map<number, T>;
}

/** Channel sequence numbers for sending, and in-order release of what is received. */
export class ChannelOrder<T> {
  private readonly sent = new Map<number, number>();
  private readonly received = new Map<number, Incoming<T>>();

  /** Takes the next channel sequence number (from 1) for a frame sent on `channel`. */
  nextSend(channel: number): number {
    const n = (this.sent.get(channel) ?? 0) + 1;
    this.sent.set(channel, n);
    return n;
  }

  /**
   * Offers a received frame (each at most once: the session drops duplicates first).
   * Returns the frames of its channel that may now be delivered, in order; none while
   * `ready` is false (the peer's OPEN for the channel has not been delivered yet).
   * Throws NOVA_DWCP_PROTOCOL for a channel sequence number already used.
   */
  accept(channel: number, chseq: number, item: T, ready: boolean): T[] {
    let rx = this.received.get(channel);
    if (!rx) {
      rx = { next: 1, held: new Map() };
      this.received.set(channel, rx);
    }
    if (chseq < rx.next || rx.held.has(chseq)) {
      throw new NovaError(
        "NOVA_DWCP_PROTOCOL",
        `Channel ${channel} received its frame ${chseq} twice under different session sequence numbers`,
        { details: { channel, chseq } },
      );
    }
    rx.held.set(chseq, item);
    return ready ? this.run(rx) : [];
  }

  /** Frames a channel can deliver now that it is ready (its OPEN was just delivered). */
  release(channel: number): T[] {
    const rx = this.received.get(channel);
    return rx ? this.run(rx) : [];
  }

  /** True while a received frame waits for its turn. */
  holds(channel: number, chseq: number): boolean {
    return this.received.get(channel)?.held.has(chseq) ?? false;
  }

  /** Frames held waiting for an earlier frame of their channel, over all channels. */
  get heldCount(): number {
    let n = 0;
    for (const rx of this.received.values()) n += rx.held.size;
    return n;
  }

  private run(rx: Incoming<T>): T[] {
    const out: T[] = [];
    for (;;) {
      const item = rx.held.get(rx.next);
      if (item === undefined) return out;
      rx.held.delete(rx.next);
      rx.next++;
      out.push(item);
    }
  }
}
