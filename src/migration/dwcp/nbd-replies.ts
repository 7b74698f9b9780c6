/**
 * Reads the server-to-client half of an NBD connection (the destination's export answering
 * the source QEMU's block mirror) record by record, so that the relay can tell where one
 * reply ends and the next begins, whose request each reply answers and whether it failed
 * (docs/migration-stream.md, "NBD"). Like the request splitter, it never changes a byte:
 * it cuts the stream into pieces, each belonging to one record.
 *
 * The subset relied on, fixed newstyle negotiation as QEMU 7.2 and 10.0 speak it:
 *   greeting          "NBDMAGIC" "IHAVEOPT" handshake flags u16
 *   option reply      magic 0x3e889045565a9 u64, option u32, type u32, length u32, data
 *                     (transmission starts after NBD_REP_ACK to NBD_OPT_GO)
 *   simple reply      magic 0x67446698 u32, error u32, cookie u64 [+ read data]
 *   structured chunk  magic 0x668e33ef u32, flags u16, type u16, cookie u64, length u32
 *   extended chunk    magic 0x6e8a278c u32, flags u16, type u16, cookie u64, offset u64,
 *                     length u64 (after NBD_OPT_EXTENDED_HEADERS was acknowledged)
 * Anything else (NBD_OPT_EXPORT_NAME's bare answer, TLS after NBD_OPT_STARTTLS, an unknown
 * magic) ends interpretation: the rest is one opaque record that never ends ("opaque").
 */

/** NBD request types (the `type` field of a request). */
export const NbdCmd = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
} as const;

const GREETING = 18;
const OPTION_REPLY_MAGIC = 0x3e889045565a9n;
const OPTION_REPLY_HEADER = 20;
const SIMPLE_MAGIC = 0x67446698;
const SIMPLE_HEADER = 16;
const STRUCTURED_MAGIC = 0x668e33ef;
const STRUCTURED_HEADER = 20;
const EXTENDED_MAGIC = 0x6e8a278c;
const EXTENDED_HEADER = 32;
const OPT_STARTTLS = 5;
const OPT_GO = 7;
const OPT_STRUCTURED_REPLY = 8;
const OPT_EXTENDED_HEADERS = 11;
const REP_ACK = 1;
const REPLY_FLAG_DONE = 1;
/** Structured reply types with this bit set are errors (NBD_REPLY_TYPE_ERROR...). */
const REPLY_TYPE_ERROR_BIT = 0x8000;
/** Payloads are followed as numbers; QEMU's replies are far below (32 MiB reads). */
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** One reply (or chunk of a structured reply) to a request. */
export interface NbdReply {
  cookie: bigint;
  /** The server reported an error for the request. */
  failed: boolean;
  /** The error number when known (0 when it succeeded or the payload held none). */
  code: number;
  /** The request needs no further reply (simple replies, chunks flagged DONE). */
  final: boolean;
}

/** A run of reply-stream bytes inside one record. */
export interface ReplyPiece {
  data: Buffer;
  /** The reply this piece belongs to; null for negotiation and opaque bytes. */
  reply: NbdReply | null;
  /** The record ends with this piece: another record may start right after it. */
  last: boolean;
  /** The piece is a reply's whole header (its cookie at byte 8). */
  header?: boolean;
}

/** What the parser needs to know about a request to find the end of its reply. */
export interface RequestInfo {
  type: number;
  length: number;
}

export type ReplyStreamMode = "greeting" | "options" | "transmission" | "opaque";

/** Incremental parser of one NBD server stream. */
export class NbdReplyParser {
  private modeValue: ReplyStreamMode = "greeting";
  private why: string | null = null;
  private structured = false;
  private extended = false;
  private pending: Buffer = Buffer.alloc(0);
  /** Payload bytes left in the current record and the reply they belong to. */
  private left = 0;
  private current: NbdReply | null = null;

  /**
   * @param request the request behind a cookie, needed for simple replies to reads (whose
   *   data follows without a length); undefined when unknown.
   */
  constructor(private readonly request: (cookie: bigint) => RequestInfo | undefined = () => undefined) {}

  get mode(): ReplyStreamMode {
    return this.modeValue;
  }

  /** Why interpretation stopped (mode "opaque"). */
  get reason(): string | null {
    return this.why;
  }

  /** Extended headers were negotiated: replies (and ours) must use the extended form. */
  get extendedHeaders(): boolean {
    return this.extended;
  }

  /** Between two transmission-phase records: a reply may be inserted here. */
  get atBoundary(): boolean {
    return this.modeValue === "transmission" && this.left === 0 && this.pending.length === 0;
  }

  push(chunk: Buffer): ReplyPiece[] {
    const out: ReplyPiece[] = [];
    let b = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = Buffer.alloc(0);
    while (b.length > 0) {
      const used = this.step(b, out);
      if (used === 0) {
        // A header (at most 32 bytes, or an error chunk's first bytes) split across reads.
        this.pending = Buffer.from(b);
        break;
      }
      b = b.subarray(used);
    }
    return out;
  }

  private step(b: Buffer, out: ReplyPiece[]): number {
    if (this.left > 0) {
      const n = Math.min(this.left, b.length);
      this.left -= n;
      out.push({ data: b.subarray(0, n), reply: this.current, last: this.left === 0 });
      if (this.left === 0) this.current = null;
      return n;
    }
    switch (this.modeValue) {
      case "greeting":
        if (b.length < GREETING) return 0;
        if (b.toString("latin1", 0, 16) !== "NBDMAGICIHAVEOPT")
          return this.stop(b, out, "not a newstyle greeting");
        out.push({ data: b.subarray(0, GREETING), reply: null, last: true });
        this.modeValue = "options";
        return GREETING;
      case "options":
        return this.optionReply(b, out);
      case "transmission":
        return this.reply(b, out);
      case "opaque":
        out.push({ data: b, reply: null, last: false });
        return b.length;
    }
  }

  private optionReply(b: Buffer, out: ReplyPiece[]): number {
    if (b.length < 8) return 0;
    if (b.readBigUInt64BE(0) !== OPTION_REPLY_MAGIC)
      return this.stop(b, out, "an answer without an option reply header");
    if (b.length < OPTION_REPLY_HEADER) return 0;
    const option = b.readUInt32BE(8);
    const type = b.readUInt32BE(12);
    const length = b.readUInt32BE(16);
    out.push({ data: b.subarray(0, OPTION_REPLY_HEADER), reply: null, last: length === 0 });
    this.left = length;
    if (type === REP_ACK) {
      if (option === OPT_STRUCTURED_REPLY) this.structured = true;
      if (option === OPT_EXTENDED_HEADERS) this.structured = this.extended = true;
      if (option === OPT_GO) this.modeValue = "transmission";
      if (option === OPT_STARTTLS) {
        this.modeValue = "opaque";
        this.why = "TLS negotiated inside NBD";
      }
    }
    return OPTION_REPLY_HEADER;
  }

  private reply(b: Buffer, out: ReplyPiece[]): number {
    if (b.length < 4) return 0;
    const magic = b.readUInt32BE(0);
    if (magic === SIMPLE_MAGIC && !this.extended) {
      if (b.length < SIMPLE_HEADER) return 0;
      const error = b.readUInt32BE(4);
      const cookie = b.readBigUInt64BE(8);
      // Without structured replies a successful read's data follows, as long as the request.
      const req = error === 0 && !this.structured ? this.request(cookie) : undefined;
      if (error === 0 && !this.structured && req === undefined)
        return this.stop(b, out, `a simple reply to unknown request ${cookie}`);
      const reply: NbdReply = { cookie, failed: error !== 0, code: error, final: true };
      this.left = req?.type === NbdCmd.READ ? req.length : 0;
      this.current = this.left > 0 ? reply : null;
      out.push({ data: b.subarray(0, SIMPLE_HEADER), reply, last: this.left === 0, header: true });
      return SIMPLE_HEADER;
    }
    if (
      (magic === STRUCTURED_MAGIC && this.structured && !this.extended) ||
      (magic === EXTENDED_MAGIC && this.extended)
    ) {
      const size = this.extended ? EXTENDED_HEADER : STRUCTURED_HEADER;
      if (b.length < size) return 0;
      const flags = b.readUInt16BE(4);
      const type = b.readUInt16BE(6);
      const cookie = b.readBigUInt64BE(8);
      const length = this.extended ? b.readBigUInt64BE(24) : BigInt(b.readUInt32BE(16));
      if (length > MAX_SAFE) return this.stop(b, out, `a reply chunk of ${length} bytes`);
      const failed = (type & REPLY_TYPE_ERROR_BIT) !== 0;
      // An error chunk's payload starts with the error number: read it with the header.
      if (failed && length >= 4n && b.length < size + 4) return 0;
      const code = failed && length >= 4n ? b.readUInt32BE(size) : 0;
      const reply: NbdReply = { cookie, failed, code, final: (flags & REPLY_FLAG_DONE) !== 0 };
      this.left = Number(length);
      this.current = this.left > 0 ? reply : null;
      out.push({ data: b.subarray(0, size), reply, last: this.left === 0, header: true });
      return size;
    }
    return this.stop(b, out, `unknown NBD reply magic 0x${magic.toString(16)}`);
  }

  /** Stops interpreting: everything from here on is one opaque record. */
  private stop(b: Buffer, out: ReplyPiece[], why: string): number {
    this.modeValue = "opaque";
    this.why = why;
    this.left = 0;
    this.current = null;
    out.push({ data: b, reply: null, last: false });
    return b.length;
  }
}
