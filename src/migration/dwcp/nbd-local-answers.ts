/**
 * The source relay's answers to NBD flushes (docs/migration.md, "Switch-over round
 * trips"): the source QEMU's block mirror flushes its target when it becomes ready, when
 * the guest stops and when the mirror finishes, and each flush used to wait a whole round
 * trip for the destination's disk. Here the relay answers NBD_CMD_FLUSH itself at once,
 * still sends the flush on, and swallows the destination's real reply, checking it.
 *
 * Why this is safe: nothing on the source acts on the target's durability except the
 * migration, and the destination resumes the guest only after its own relay saw every
 * request answered without error (nbd-reply-gate.ts) and the stream verified end to end.
 * Should the real flush fail, the destination refuses to resume and the source, whose own
 * disk holds every write, resumes the guest instead. A real reply that reports a failure
 * also fails this relay at once.
 *
 * Replies are inserted only between two records of the destination's reply stream
 * (nbd-replies.ts); while that stream cannot be followed, nothing is answered locally.
 *
 * Cookies: QEMU's client numbers requests by their slot and reuses a cookie as soon as it
 * has the answer. After a local answer it may send a new request under that cookie while
 * the real flush is still out, and a reply to that cookie would be ambiguous. Such a
 * request is held: the relay sends nothing more until the real reply came back (held()).
 */
import { NovaError } from "../../lib/errors.js";
import { NbdCmd, NbdReplyParser, type RequestInfo } from "./nbd-replies.js";
import type { NbdRequestHeader } from "./nbd-splitter.js";

/** The relay's hook into the stream's return path (relay-source.ts). */
export interface ReturnPath {
  /** Bytes from the destination's server: what the local client gets now, in order. */
  fromDestination(bytes: Buffer): Buffer[];
  /** Replies made here that may go to the local client now. */
  takeLocal(): Buffer[];
  /** After the destination's verdict: throws if an answer given here was not confirmed. */
  confirmAll(): void;
  /** null, or a promise: the client's bytes must wait for it before going on. */
  held(): Promise<void> | null;
}

/** Requests followed at once; QEMU's NBD client keeps at most 16 in flight. */
const MAX_TRACKED = 4096;
const SIMPLE_MAGIC = 0x67446698;
const EXTENDED_MAGIC = 0x6e8a278c;
const REPLY_FLAG_DONE = 1;
const REPLY_TYPE_NONE = 0;

/** Counters of one connection's local answers. */
export interface LocalAnswerStats {
  /** Flushes answered here. */
  answered: number;
  /** Their real replies, checked and swallowed. */
  confirmed: number;
}

/** Answers one NBD connection's flushes at the source. */
export class NbdLocalAnswers implements ReturnPath {
  readonly stats: LocalAnswerStats = { answered: 0, confirmed: 0 };
  private readonly requests = new Map<bigint, RequestInfo>();
  private readonly ours = new Set<bigint>();
  private readonly replies = new NbdReplyParser((c) => this.requests.get(c));
  private queued: Buffer[] = [];
  private tracking = true;
  /** Requests that reuse the cookie of an answer not yet confirmed, held back. */
  private readonly reused = new Map<bigint, RequestInfo>();
  private holders: (() => void)[] = [];

  /** Told of every request header the source's splitter reads (NbdRequestSplitter). */
  onRequest(r: NbdRequestHeader): void {
    if (!this.tracking || r.type === NbdCmd.DISC) return;
    if (this.ours.has(r.cookie)) {
      // Not answered here either: it goes across once the earlier flush is confirmed.
      this.reused.set(r.cookie, { type: r.type, length: Number(r.length) });
      return;
    }
    if (this.requests.size >= MAX_TRACKED) {
      // Following cannot go on; answers already given are still checked by the gate.
      this.tracking = false;
      return;
    }
    this.requests.set(r.cookie, { type: r.type, length: Number(r.length) });
    if (r.type !== NbdCmd.FLUSH || this.replies.mode !== "transmission") return;
    this.ours.add(r.cookie);
    this.stats.answered++;
    this.queued.push(this.replies.extendedHeaders ? extendedDone(r) : simpleOk(r.cookie));
  }

  takeLocal(): Buffer[] {
    if (this.queued.length === 0 || !this.replies.atBoundary) return [];
    const q = this.queued;
    this.queued = [];
    return q;
  }

  fromDestination(bytes: Buffer): Buffer[] {
    const out: Buffer[] = [];
    for (const piece of this.replies.push(bytes)) {
      const r = piece.reply;
      if (r && this.ours.has(r.cookie)) {
        if (r.failed)
          throw new NovaError(
            "NOVA_MIGRATION_RELAY",
            `The destination's disk failed a flush the relay had answered (error ${r.code}); the migration cannot finish`,
            { details: { code: r.code } },
          );
        if (piece.last && r.final) {
          this.ours.delete(r.cookie);
          this.requests.delete(r.cookie);
          this.stats.confirmed++;
          this.release(r.cookie);
        }
      } else {
        if (r && piece.last && r.final) this.requests.delete(r.cookie);
        out.push(piece.data);
      }
      // A record ends here, whatever the parser's state at the end of `bytes`.
      if (piece.last && this.queued.length > 0) {
        out.push(...this.queued);
        this.queued = [];
      }
    }
    if (this.replies.mode === "opaque" && this.ours.size > 0)
      throw new NovaError(
        "NOVA_MIGRATION_RELAY",
        `The destination's NBD replies can no longer be followed (${this.replies.reason}) with ${this.ours.size} flush(es) answered here unconfirmed`,
      );
    return out;
  }

  /** Requests held back now (reusing the cookie of an unconfirmed answer). */
  get holding(): number {
    return this.reused.size;
  }

  held(): Promise<void> | null {
    if (this.reused.size === 0) return null;
    return new Promise((resolve) => this.holders.push(resolve));
  }

  /** The request held under `cookie` may go on now; it is followed from here on. */
  private release(cookie: bigint): void {
    const next = this.reused.get(cookie);
    if (!next) return;
    this.reused.delete(cookie);
    this.requests.set(cookie, next);
    if (this.reused.size === 0) for (const h of this.holders.splice(0)) h();
  }

  confirmAll(): void {
    if (this.ours.size > 0)
      throw new NovaError(
        "NOVA_MIGRATION_RELAY",
        `The destination never confirmed ${this.ours.size} flush(es) the relay had answered`,
      );
  }
}

function simpleOk(cookie: bigint): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32BE(SIMPLE_MAGIC, 0);
  b.writeBigUInt64BE(cookie, 8);
  return b;
}

/** As QEMU's server answers a successful request under extended headers. */
function extendedDone(r: NbdRequestHeader): Buffer {
  const b = Buffer.alloc(32);
  b.writeUInt32BE(EXTENDED_MAGIC, 0);
  b.writeUInt16BE(REPLY_FLAG_DONE, 4);
  b.writeUInt16BE(REPLY_TYPE_NONE, 6);
  b.writeBigUInt64BE(r.cookie, 8);
  b.writeBigUInt64BE(r.offset, 16);
  return b;
}
