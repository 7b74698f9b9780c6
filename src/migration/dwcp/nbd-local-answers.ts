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
 * has the answer, so after a local answer it may send a new request under that cookie
 * while the real flush is still out, and a reply to that cookie would be ambiguous. The
 * relay therefore gives every request crossing the link a cookie of its own (counting up
 * from 2^60, far above QEMU's slot numbers and 7.2's pointer values) and puts QEMU's back
 * into each reply; the end-to-end check covers the stream as relayed.
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
}

/** The first cookie the relay gives a request; QEMU's own are far below. */
export const RELAY_COOKIE_BASE = 1n << 60n;

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
  /** Requests in flight by the relay's cookie: what the reply parser needs. */
  private readonly requests = new Map<bigint, RequestInfo>();
  /** The client's own cookie of each request in flight, by the relay's. */
  private readonly clientCookie = new Map<bigint, bigint>();
  private readonly ours = new Set<bigint>();
  private readonly replies = new NbdReplyParser((c) => this.requests.get(c));
  private queued: Buffer[] = [];
  private nextCookie = RELAY_COOKIE_BASE;

  /**
   * Told of every request header the source's splitter reads (NbdRequestSplitter); returns
   * the cookie the request crosses the link with.
   */
  onRequest(r: NbdRequestHeader): bigint | undefined {
    // DISC has no reply: nothing to translate back.
    if (r.type === NbdCmd.DISC) return undefined;
    if (this.requests.size >= MAX_TRACKED)
      throw new NovaError(
        "NOVA_MIGRATION_RELAY",
        `More than ${MAX_TRACKED} NBD requests in flight on one connection; the relay follows at most that many`,
      );
    const cookie = this.nextCookie++;
    this.requests.set(cookie, { type: r.type, length: Number(r.length) });
    this.clientCookie.set(cookie, r.cookie);
    if (r.type === NbdCmd.FLUSH && this.replies.mode === "transmission") {
      this.ours.add(cookie);
      this.stats.answered++;
      this.queued.push(this.replies.extendedHeaders ? extendedDone(r) : simpleOk(r.cookie));
    }
    return cookie;
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
          this.forget(r.cookie);
          this.stats.confirmed++;
        }
      } else if (r) {
        out.push(piece.header ? this.toClient(piece.data, r.cookie) : piece.data);
        if (piece.last && r.final) this.forget(r.cookie);
      } else out.push(piece.data);
      // A record ends here, whatever the parser's state at the end of `bytes`.
      if (piece.last && this.queued.length > 0) {
        out.push(...this.queued);
        this.queued = [];
      }
    }
    if (this.replies.mode === "opaque" && this.clientCookie.size > 0)
      throw new NovaError(
        "NOVA_MIGRATION_RELAY",
        `The destination's NBD replies can no longer be followed (${this.replies.reason}) with ${this.clientCookie.size} request(s) in flight`,
      );
    return out;
  }

  /** The reply header with the client's own cookie in place of the relay's. */
  private toClient(header: Buffer, cookie: bigint): Buffer {
    const own = this.clientCookie.get(cookie);
    if (own === undefined)
      throw new NovaError(
        "NOVA_DWCP_PROTOCOL",
        `The destination's NBD server answered request ${cookie}, which was never sent`,
      );
    const h = Buffer.from(header);
    h.writeBigUInt64BE(own, 8);
    return h;
  }

  private forget(cookie: bigint): void {
    this.requests.delete(cookie);
    this.clientCookie.delete(cookie);
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
