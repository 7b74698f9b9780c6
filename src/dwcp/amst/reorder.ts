/**
 * Bounded reorder buffer for AMST (docs/dwcp.md §4.2). Frames striped over several
 * connections arrive out of order; this holds early ones until the gap before them is
 * filled and hands them out strictly in sequence order, dropping duplicates (a frame
 * resent after a connection broke may arrive twice). Its bounds are a frame-count
 * horizon and a byte budget, both enforced: a peer that exceeds them is broken or hostile.
 * A frame delivered ahead of the session's order (per-channel order, channel-order.ts)
 * is `release`d: it stops counting against the budget but keeps its place, so that the
 * received-through point and duplicate detection stay exact.
 */
import { NovaError } from "../../lib/errors.js";

/** Result of offering a frame to the buffer. */
export type AcceptResult = "accepted" | "duplicate";

/** Limits of a reorder buffer. */
export interface ReorderLimits {
  /** Largest distance ahead of the next expected sequence number. */
  maxAheadFrames: number;
  /** Largest number of payload bytes held. */
  maxBytes: number;
}

/** Holds out-of-order items keyed by sequence number (first sequence number is 1). */
export class ReorderBuffer<T> {
  private readonly held = new Map<number, { item: T; size: number }>();
  private heldBytesValue = 0;
  private through = 0;

  constructor(private readonly limits: ReorderLimits) {}

  /** Highest sequence number such that it and all before it have been received. */
  get receivedThrough(): number {
    return this.through;
  }

  /** Bytes held waiting for a gap to fill. */
  get heldBytes(): number {
    return this.heldBytesValue;
  }

  /** Number of items held. */
  get heldCount(): number {
    return this.held.size;
  }

  /**
   * Offers item `seq`. Returns "duplicate" for a sequence number already received or held.
   * Throws NOVA_DWCP_PROTOCOL when it lies beyond the horizon or would exceed the budget.
   */
  accept(seq: number, item: T, size: number): AcceptResult {
    if (!Number.isSafeInteger(seq) || seq < 1) {
      throw new NovaError("NOVA_DWCP_PROTOCOL", `Invalid sequence number ${seq}`);
    }
    if (seq <= this.through || this.held.has(seq)) return "duplicate";
    if (seq > this.through + this.limits.maxAheadFrames) {
      throw new NovaError(
        "NOVA_DWCP_PROTOCOL",
        `Frame ${seq} is ${seq - this.through} frames ahead of the next expected; the limit is ${this.limits.maxAheadFrames}`,
        { details: { seq, expected: this.through + 1 } },
      );
    }
    if (this.heldBytesValue + size > this.limits.maxBytes) {
      throw new NovaError(
        "NOVA_DWCP_PROTOCOL",
        `Reorder buffer would exceed its ${this.limits.maxBytes}-byte budget; the peer ignores the window`,
        { details: { seq, heldBytes: this.heldBytesValue } },
      );
    }
    this.held.set(seq, { item, size });
    this.heldBytesValue += size;
    return "accepted";
  }

  /** Stops counting a held item's bytes: it was delivered before its turn. */
  release(seq: number): void {
    const entry = this.held.get(seq);
    if (!entry) return;
    this.heldBytesValue -= entry.size;
    entry.size = 0;
  }

  /** Removes and returns, in order, every item that is now contiguous (released ones too). */
  drain(): T[] {
    const out: T[] = [];
    for (;;) {
      const next = this.held.get(this.through + 1);
      if (next === undefined) break;
      this.held.delete(this.through + 1);
      this.heldBytesValue -= next.size;
      this.through += 1;
      out.push(next.item);
    }
    return out;
  }
}
