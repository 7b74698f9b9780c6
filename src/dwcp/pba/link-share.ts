/**
 * Enforces fair sharing of one link among transfers (docs/dwcp.md §9.3): each transfer
 * registers, then calls `acquire(bytes)` before sending; a token bucket per transfer
 * releases bytes at the rate `allocate()` gave it. Allocations are recomputed when
 * transfers come and go, report progress, or the predicted capacity changes.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { NovaError } from "../../lib/errors.js";
import { type Allocation, allocate, type TransferDemand } from "./fair-share.js";

/** Options of a transfer joining the link. */
export type TransferOptions = Omit<TransferDemand, "id" | "remainingBytes"> & { totalBytes: number };

/** A transfer's handle on the shared link. */
export interface SharedTransfer {
  readonly id: string;
  /** Waits until `bytes` may be sent, then counts them as sent. */
  acquire(bytes: number): Promise<void>;
  /** Current allocation and ETA. */
  allocation(): Allocation;
  /** Leaves the link (its share goes to the others). */
  done(): void;
}

interface Entry {
  demand: TransferDemand;
  tokens: number;
  lastRefill: number;
  alloc: Allocation;
}

/** A link shared by several transfers. */
export class LinkShare {
  private readonly entries = new Map<string, Entry>();
  private capacity: number;
  private nextId = 1;
  private lastAllocation = 0;

  /** @param capacityBps predicted link capacity, bytes/s. */
  constructor(
    capacityBps: number,
    private readonly burstSeconds = 0.05,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.capacity = capacityBps;
  }

  /** The capacity being shared, bytes/s. */
  get capacityBps(): number {
    return this.capacity;
  }

  /** Updates the capacity (e.g. from the PBA predictor). */
  setCapacity(bytesPerSecond: number): void {
    this.capacity = bytesPerSecond;
    this.reallocate();
  }

  /** Joins a transfer. */
  join(options: TransferOptions): SharedTransfer {
    const id = `t${this.nextId++}`;
    const { totalBytes, ...rest } = options;
    const entry: Entry = {
      demand: { ...rest, id, remainingBytes: totalBytes },
      tokens: 0,
      lastRefill: this.now(),
      alloc: { rateBps: 0, etaSeconds: Number.POSITIVE_INFINITY, atRisk: false },
    };
    this.entries.set(id, entry);
    this.reallocate();
    return {
      id,
      acquire: (bytes) => this.acquire(entry, bytes),
      allocation: () => ({ ...entry.alloc }),
      done: () => {
        this.entries.delete(id);
        this.reallocate();
      },
    };
  }

  /** All current allocations by transfer id. */
  allocations(): Map<string, Allocation> {
    return new Map([...this.entries].map(([id, e]) => [id, { ...e.alloc }]));
  }

  private reallocate(): void {
    const now = this.now();
    this.lastAllocation = now;
    for (const e of this.entries.values()) this.refill(e, now);
    const allocs = allocate(
      this.capacity,
      [...this.entries.values()].map((e) => e.demand),
      now,
    );
    for (const [id, a] of allocs) {
      const e = this.entries.get(id);
      if (e) e.alloc = a;
    }
  }

  private refill(e: Entry, now: number): void {
    const dt = Math.max(0, now - e.lastRefill) / 1000;
    e.lastRefill = now;
    const burst = Math.max(e.alloc.rateBps * this.burstSeconds, 64 * 1024);
    e.tokens = Math.min(burst, e.tokens + e.alloc.rateBps * dt);
  }

  private async acquire(e: Entry, bytes: number): Promise<void> {
    if (!this.entries.has(e.demand.id))
      throw new NovaError("NOVA_DWCP_CLOSED", "Transfer already left the link");
    for (;;) {
      this.refill(e, this.now());
      // A request larger than the burst may go once the bucket is full, running it negative.
      const burst = Math.max(e.alloc.rateBps * this.burstSeconds, 64 * 1024);
      if (e.tokens >= Math.min(bytes, burst)) {
        e.tokens -= bytes;
        e.demand.remainingBytes = Math.max(0, e.demand.remainingBytes - bytes);
        // Deadline rates depend on what is left: refresh allocations a few times a second.
        if (e.demand.remainingBytes === 0 || this.now() - this.lastAllocation > 250) this.reallocate();
        return;
      }
      const rate = e.alloc.rateBps;
      const waitMs = rate > 0 ? Math.min(100, ((Math.min(bytes, burst) - e.tokens) / rate) * 1000) : 50;
      await sleep(Math.max(1, waitMs));
    }
  }
}
