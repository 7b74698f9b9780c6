/**
 * One-time, expiring download tickets for image blobs. When a migration's destination
 * lacks the VM's base image, the server asks the source agent for a ticket and hands the
 * destination a URL carrying it: the destination can fetch that one blob, once, without
 * ever holding the source host's credential.
 */
import { randomBytes } from "node:crypto";

interface Ticket {
  digest: string;
  expiresAt: number;
}

/** Issues and redeems tickets. */
export class BlobTickets {
  private readonly tickets = new Map<string, Ticket>();

  constructor(private readonly ttlMs = 10 * 60_000) {}

  /** A ticket for one download of `digest`. */
  issue(digest: string): string {
    this.prune();
    const ticket = randomBytes(24).toString("base64url");
    this.tickets.set(ticket, { digest, expiresAt: Date.now() + this.ttlMs });
    return ticket;
  }

  /** True (and the ticket is spent) when `ticket` is valid for `digest`. */
  redeem(ticket: string, digest: string): boolean {
    this.prune();
    const t = this.tickets.get(ticket);
    if (!t || t.digest !== digest) return false;
    this.tickets.delete(ticket);
    return true;
  }

  private prune(): void {
    const now = Date.now();
    for (const [k, t] of this.tickets) if (t.expiresAt < now) this.tickets.delete(k);
  }
}
