/**
 * Splits the client-to-server half of an NBD connection (the source QEMU's block mirror
 * writing into the destination's export) so that the data of aligned NBD_CMD_WRITE
 * requests travels as 4 KiB pages through HDE: zero blocks elided, blocks the destination
 * already caches sent as references, rewritten blocks as deltas against what was last
 * sent for that disk offset. Page number = byte offset / 4096.
 *
 * The subset of the NBD protocol relied on (docs/migration-stream.md, "NBD"), fixed
 * newstyle negotiation as QEMU 7.2 and 10.0 speak it:
 *   client flags      u32
 *   option            "IHAVEOPT" u64, option u32, length u32, `length` bytes
 *   request           magic 0x25609513 u32, flags u16, type u16, cookie u64,
 *                     offset u64, length u32
 *   extended request  magic 0x21e41c71 u32, the same fields but length u64 (QEMU ≥ 8.2
 *                     once NBD_OPT_EXTENDED_HEADERS was accepted)
 * A request carries `length` bytes of payload when it is NBD_CMD_WRITE (1), or, in the
 * extended form, when it has NBD_CMD_FLAG_PAYLOAD_LEN (QEMU's client never sets it, but a
 * server reads the payload whatever the command). Writes whose offset or length is not a
 * multiple of 4096 pass verbatim. Anything else (an unknown magic, such as TLS after
 * STARTTLS) ends interpretation: the rest of the connection passes verbatim ("fallback").
 * Like the migration stream's parser, it never changes a byte: understanding only decides
 * which bytes become pages.
 */
import type { SplitEvent, StreamSplitter } from "./splitter.js";

const PAGE = 4096;
const OPT_MAGIC = Buffer.from("IHAVEOPT", "latin1");
const REQUEST_MAGIC = 0x25609513;
const EXTENDED_REQUEST_MAGIC = 0x21e41c71;
const CMD_WRITE = 1;
const CMD_FLAG_PAYLOAD_LEN = 1 << 5;
const OPTION_HEADER = 16;
const REQUEST_HEADER = 28;
const EXTENDED_REQUEST_HEADER = 32;
/** Offsets and lengths are followed as numbers; QEMU's are far below (32 MiB requests). */
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

enum S {
  CLIENT_FLAGS,
  RECORD,
  OPTION_DATA,
  VERBATIM_PAYLOAD,
  WRITE_PAGES,
  OPAQUE,
}

/** Counters of an NBD connection. */
export interface NbdSplitStats {
  requests: number;
  /** Requests in the extended form (64-bit length). */
  extendedRequests: number;
  writes: number;
  /** Write bytes that went out as pages. */
  pageBytes: number;
  /** Write bytes passed verbatim (unaligned writes). */
  verbatimWriteBytes: number;
  /** Payload bytes of other commands (NBD_CMD_FLAG_PAYLOAD_LEN), passed verbatim. */
  otherPayloadBytes: number;
}

/** A request header as the splitter saw it. */
export interface NbdRequestHeader {
  type: number;
  flags: number;
  cookie: bigint;
  offset: bigint;
  length: bigint;
  extended: boolean;
  /** Stream position just after the header (bytes from the connection's start). */
  end: number;
}

/** Incremental splitter of one NBD client stream. */
export class NbdRequestSplitter implements StreamSplitter {
  readonly stats: NbdSplitStats = {
    requests: 0,
    extendedRequests: 0,
    writes: 0,
    pageBytes: 0,
    verbatimWriteBytes: 0,
    otherPayloadBytes: 0,
  };
  readonly formatZeroPages = 0;
  private state = S.CLIENT_FLAGS;
  /** Bytes of an unfinished header or page. */
  private pending: Buffer = Buffer.alloc(0);
  /** Bytes left in the current option data / payload / write. */
  private left = 0;
  private pageNo = 0;
  private why: string | null = null;
  private ended = false;
  /** Stream bytes pushed so far, and the position of the buffer being parsed. */
  private pushed = 0;
  private position = 0;

  /**
   * @param onRequest told of every request header, in stream order; a cookie it returns
   *   replaces the request's in the bytes passed on (the source relay's own cookies,
   *   nbd-local-answers.ts).
   */
  constructor(private readonly onRequest?: (r: NbdRequestHeader) => bigint | undefined) {}

  /** Whether bytes passed on may differ from the input (cookies rewritten). */
  get rewrites(): boolean {
    return this.onRequest !== undefined;
  }

  get mode(): string {
    if (this.state === S.OPAQUE) return "fallback";
    return this.ended ? "done" : "parsing";
  }

  get reason(): string | null {
    return this.why;
  }

  push(chunk: Buffer): SplitEvent[] {
    const out: SplitEvent[] = [];
    this.position = this.pushed - this.pending.length;
    this.pushed += chunk.length;
    let b = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = Buffer.alloc(0);
    while (b.length > 0) {
      const used = this.step(b, out);
      if (used === 0) {
        // Needs more input than there is: keep the partial record (bounded by a page).
        this.pending = Buffer.from(b);
        break;
      }
      b = b.subarray(used);
      this.position += used;
    }
    return out;
  }

  end(): { events: SplitEvent[]; truncated: boolean } {
    this.ended = true;
    const events: SplitEvent[] = [];
    const truncated =
      this.pending.length > 0 || (this.left > 0 && this.state !== S.OPAQUE && this.state !== S.RECORD);
    if (this.pending.length > 0) events.push({ kind: "bytes", data: this.pending });
    this.pending = Buffer.alloc(0);
    return { events, truncated };
  }

  /** Consumes a prefix of `b`, emitting events; 0 = needs more bytes. */
  private step(b: Buffer, out: SplitEvent[]): number {
    switch (this.state) {
      case S.CLIENT_FLAGS:
        if (b.length < 4) return 0;
        out.push({ kind: "bytes", data: b.subarray(0, 4) });
        this.state = S.RECORD;
        return 4;
      case S.RECORD:
        return this.record(b, out);
      case S.OPTION_DATA:
      case S.VERBATIM_PAYLOAD: {
        const n = Math.min(this.left, b.length);
        out.push({ kind: "bytes", data: b.subarray(0, n) });
        this.left -= n;
        if (this.left === 0) this.state = S.RECORD;
        return n;
      }
      case S.WRITE_PAGES: {
        if (b.length < PAGE) return 0;
        out.push({ kind: "page", pageNo: this.pageNo++, data: b.subarray(0, PAGE) });
        this.stats.pageBytes += PAGE;
        this.left -= PAGE;
        if (this.left === 0) this.state = S.RECORD;
        return PAGE;
      }
      case S.OPAQUE:
        out.push({ kind: "bytes", data: b });
        return b.length;
    }
  }

  private record(b: Buffer, out: SplitEvent[]): number {
    if (b.length < 4) return 0;
    const magic = b.readUInt32BE(0);
    if (magic === REQUEST_MAGIC || magic === EXTENDED_REQUEST_MAGIC) return this.request(b, out);
    if (b.length < OPT_MAGIC.length) return 0;
    if (b.subarray(0, OPT_MAGIC.length).equals(OPT_MAGIC)) {
      if (b.length < OPTION_HEADER) return 0;
      out.push({ kind: "bytes", data: b.subarray(0, OPTION_HEADER) });
      this.left = b.readUInt32BE(12);
      if (this.left > 0) this.state = S.OPTION_DATA;
      return OPTION_HEADER;
    }
    this.stop(`unknown NBD record magic 0x${magic.toString(16)}`);
    return this.step(b, out);
  }

  private request(b: Buffer, out: SplitEvent[]): number {
    const extended = b.readUInt32BE(0) === EXTENDED_REQUEST_MAGIC;
    const size = extended ? EXTENDED_REQUEST_HEADER : REQUEST_HEADER;
    if (b.length < size) return 0;
    this.stats.requests++;
    if (extended) this.stats.extendedRequests++;
    out.push({ kind: "bytes", data: b.subarray(0, size) });
    const flags = b.readUInt16BE(4);
    const write = b.readUInt16BE(6) === CMD_WRITE;
    const offset = b.readBigUInt64BE(16);
    const length = extended ? b.readBigUInt64BE(24) : BigInt(b.readUInt32BE(24));
    if (write) this.stats.writes++;
    const cookie = this.onRequest?.({
      type: b.readUInt16BE(6),
      flags,
      cookie: b.readBigUInt64BE(8),
      offset,
      length,
      extended,
      end: this.position + size,
    });
    // The header's event is a view of `b`: the new cookie is what is passed on.
    if (typeof cookie === "bigint") b.writeBigUInt64BE(cookie, 8);
    if (!write && !(extended && (flags & CMD_FLAG_PAYLOAD_LEN) !== 0)) return size;
    if (length === 0n) return size;
    if (length > MAX_SAFE || offset > MAX_SAFE) {
      this.stop(`NBD request at ${offset} of ${length} bytes`);
      return size;
    }
    this.left = Number(length);
    if (write && offset % BigInt(PAGE) === 0n && length % BigInt(PAGE) === 0n) {
      this.pageNo = Number(offset) / PAGE;
      this.state = S.WRITE_PAGES;
    } else {
      if (write) this.stats.verbatimWriteBytes += this.left;
      else this.stats.otherPayloadBytes += this.left;
      this.state = S.VERBATIM_PAYLOAD;
    }
    return size;
  }

  /** Stops interpreting: everything from the current position on passes verbatim. */
  private stop(why: string): void {
    this.state = S.OPAQUE;
    this.why = `${why} after ${this.stats.requests} requests`;
  }
}
