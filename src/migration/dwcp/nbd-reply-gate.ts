/**
 * The destination relay's check of its NBD export's answers (docs/migration.md,
 * "Switch-over round trips"). The source relay answers flushes itself (nbd-local-answers.ts),
 * so the source QEMU may finish its mirror and disconnect while the real flush is still
 * running here. This gate makes the destination the judge instead:
 * - it follows every request of the rebuilt client stream and every reply of the export;
 * - an error reply to a flush the source answered fails the relay (the destination then
 *   never resumes); other error replies reach the source QEMU, which handles them as
 *   it would without the relay (falling back from a fast zero, failing its mirror);
 * - NBD_CMD_DISC is held back (its last byte) until the export answered every flush the
 *   source answered, because QEMU's server drops the connection on DISC without
 *   answering what is still in flight (the client itself waits for its other requests);
 * - the relay reports the stream verified only once those flushes were answered (settled).
 */
import { NovaError } from "../../lib/errors.js";
import { NbdCmd, NbdReplyParser, type RequestInfo } from "./nbd-replies.js";
import { type NbdRequestHeader, NbdRequestSplitter } from "./nbd-splitter.js";

/** A protocol-aware check of the server's answers, used by the destination relay. */
export interface ServerReplyGate {
  /**
   * Client bytes about to be written to the server: returns how many of them may go now;
   * the rest must wait until settled() resolves.
   */
  clientBytes(data: Buffer): number;
  /** Server bytes as they arrive; throws when a reply reports a failure. */
  serverBytes(data: Buffer): void;
  /** Resolves once every request that must be was answered; rejects on a failure. */
  settled(): Promise<void>;
  /** Fails settled() (the relay failed for another reason). */
  abort(err: Error): void;
}

/** Requests followed at once; more means a client that does not wait for answers. */
const MAX_OUTSTANDING = 4096;

/** Follows one NBD connection at the destination. */
export class NbdReplyGate implements ServerReplyGate {
  /** Every request not yet answered, for the reply parser. */
  private readonly outstanding = new Map<bigint, RequestInfo>();
  /**
   * The flushes the source answered itself: those sent once the export had accepted the
   * connection (NBD_OPT_GO), which the source relay saw the same way (the client can send
   * a request only after the acknowledgement passed through here).
   */
  private readonly flushes = new Set<bigint>();
  private readonly requests: NbdRequestSplitter;
  private readonly replies = new NbdReplyParser((c) => this.outstanding.get(c));
  private written = 0;
  /** Stream position after the last byte of a DISC header seen in the current data. */
  private discEnd = -1;
  private failure: Error | null = null;
  private waiters: { resolve: () => void; reject: (e: Error) => void }[] = [];

  constructor() {
    // Only follows: the bytes written are the rebuilt stream, never changed here.
    this.requests = new NbdRequestSplitter((r) => {
      this.onRequest(r);
      return undefined;
    });
  }

  /** Flushes answered by the source and not yet by the export. */
  get pendingFlushes(): number {
    return this.flushes.size;
  }

  private onRequest(r: NbdRequestHeader): void {
    if (r.type === NbdCmd.DISC) {
      this.discEnd = r.end;
      return;
    }
    if (this.outstanding.size >= MAX_OUTSTANDING) {
      this.fail(
        new NovaError("NOVA_MIGRATION_RELAY", `More than ${MAX_OUTSTANDING} NBD requests in flight at once`),
      );
      return;
    }
    this.outstanding.set(r.cookie, { type: r.type, length: Number(r.length) });
    if (r.type === NbdCmd.FLUSH && this.replies.mode === "transmission") this.flushes.add(r.cookie);
  }

  clientBytes(data: Buffer): number {
    const start = this.written;
    this.written += data.length;
    this.discEnd = -1;
    this.requests.push(data);
    if (this.discEnd < 0) return data.length;
    // The header's last byte stays back: the server acts on DISC only once it has it all.
    return this.discEnd - 1 - start;
  }

  serverBytes(data: Buffer): void {
    if (this.failure) throw this.failure;
    for (const piece of this.replies.push(data)) {
      const r = piece.reply;
      if (!r) continue;
      if (r.failed && this.flushes.has(r.cookie)) {
        throw this.fail(
          new NovaError(
            "NOVA_MIGRATION_RELAY",
            `The destination's disk export failed a flush the source had answered (request ${r.cookie}, error ${r.code}); the disk cannot be trusted`,
            { details: { code: r.code } },
          ),
        );
      }
      if (piece.last && r.final) {
        this.outstanding.delete(r.cookie);
        this.flushes.delete(r.cookie);
      }
    }
    this.wake();
  }

  settled(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.answered) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  abort(err: Error): void {
    this.fail(err);
  }

  private fail(err: Error): Error {
    this.failure ??= err;
    for (const w of this.waiters.splice(0)) w.reject(this.failure);
    return this.failure;
  }

  /**
   * Nothing left to wait for. Replies that can no longer be followed count as answered:
   * the source's relay follows the same bytes, and an answer it gave that can no longer
   * be confirmed fails it, and with it this relay.
   */
  private get answered(): boolean {
    return this.flushes.size === 0 || this.replies.mode === "opaque";
  }

  private wake(): void {
    if (!this.answered) return;
    for (const w of this.waiters.splice(0)) w.resolve();
  }
}
