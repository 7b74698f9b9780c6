/**
 * The NBD reply parser on server streams built to the protocol, in the three reply forms:
 * every byte comes out exactly once whatever the chunking, each reply is found with its
 * cookie, failure and end, and anything unknown turns the rest opaque.
 */
import { randomBytes } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  chunkReply,
  cut,
  errorPayload,
  greeting,
  Opt,
  optionReply,
  simpleReply,
} from "./nbd-frames.test-util.js";
import { NbdCmd, NbdReplyParser, type ReplyPiece, type RequestInfo } from "./nbd-replies.js";

const ACK = 1;
const INFO = 3;

function parse(data: Buffer, at: number[], requests = new Map<bigint, RequestInfo>()) {
  const p = new NbdReplyParser((c) => requests.get(c));
  const pieces: ReplyPiece[] = [];
  for (const part of cut(data, at)) pieces.push(...p.push(part));
  return { p, pieces };
}

/** The replies that ended, in order: cookie, failed, code, final. */
const ended = (pieces: ReplyPiece[]) => pieces.filter((x) => x.last && x.reply).map((x) => ({ ...x.reply! }));

const readData = randomBytes(8192);
const simpleStream = Buffer.concat([
  greeting(),
  optionReply(Opt.GO, INFO, Buffer.from([0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 3])),
  optionReply(Opt.GO, ACK),
  simpleReply(1n),
  simpleReply(2n, 0, readData),
  simpleReply(3n, 5),
]);
const simpleRequests = new Map<bigint, RequestInfo>([
  [1n, { type: NbdCmd.FLUSH, length: 0 }],
  [2n, { type: NbdCmd.READ, length: 8192 }],
  [3n, { type: NbdCmd.WRITE, length: 4096 }],
]);

const extendedStream = Buffer.concat([
  greeting(),
  optionReply(Opt.EXTENDED_HEADERS, ACK),
  optionReply(Opt.GO, ACK),
  chunkReply(1n, { extended: true, offset: 4096 }),
  chunkReply(2n, { extended: true, type: 1, done: false, payload: randomBytes(5000) }),
  chunkReply(2n, { extended: true }),
  chunkReply(3n, { extended: true, type: 0x8001, payload: errorPayload(28) }),
]);

describe("NbdReplyParser", () => {
  it("follows simple replies, a read's data by its request's length, errors by their number", () => {
    const { p, pieces } = parse(simpleStream, [], simpleRequests);
    expect(p.mode).toBe("transmission");
    expect(p.atBoundary).toBe(true);
    expect(Buffer.concat(pieces.map((x) => x.data)).equals(simpleStream)).toBe(true);
    expect(ended(pieces)).toEqual([
      { cookie: 1n, failed: false, code: 0, final: true },
      { cookie: 2n, failed: false, code: 0, final: true },
      { cookie: 3n, failed: true, code: 5, final: true },
    ]);
  });

  it("follows extended chunks: DONE ends a request, an error chunk's number is read", () => {
    const { p, pieces } = parse(extendedStream, []);
    expect(p.extendedHeaders).toBe(true);
    expect(p.mode).toBe("transmission");
    expect(ended(pieces)).toEqual([
      { cookie: 1n, failed: false, code: 0, final: true },
      { cookie: 2n, failed: false, code: 0, final: false },
      { cookie: 2n, failed: false, code: 0, final: true },
      { cookie: 3n, failed: true, code: 28, final: true },
    ]);
  });

  it("follows structured chunks after NBD_OPT_STRUCTURED_REPLY, simple replies beside them", () => {
    const data = Buffer.concat([
      greeting(),
      optionReply(Opt.STRUCTURED_REPLY, ACK),
      optionReply(Opt.GO, ACK),
      chunkReply(9n, { type: 1, payload: randomBytes(300) }),
      simpleReply(10n),
    ]);
    const { pieces } = parse(data, [45, 61, 70]);
    expect(ended(pieces).map((r) => r.cookie)).toEqual([9n, 10n]);
  });

  it("gives the same pieces' bytes and replies however the input is cut", () => {
    for (const [data, reqs] of [
      [simpleStream, simpleRequests],
      [extendedStream, new Map()],
    ] as const) {
      const whole = parse(data, [], reqs);
      fc.assert(
        fc.property(fc.array(fc.integer({ min: 0, max: data.length }), { maxLength: 12 }), (at) => {
          const r = parse(data, at, reqs);
          expect(Buffer.concat(r.pieces.map((x) => x.data)).equals(data)).toBe(true);
          expect(ended(r.pieces)).toEqual(ended(whole.pieces));
        }),
        { numRuns: 200 },
      );
    }
  });

  it("is never at a boundary inside a record", () => {
    const p = new NbdReplyParser((c) => simpleRequests.get(c));
    p.push(simpleStream.subarray(0, simpleStream.length - 16 - 100));
    expect(p.atBoundary).toBe(false); // inside the read's data
    p.push(simpleStream.subarray(simpleStream.length - 16 - 100, simpleStream.length - 3));
    expect(p.atBoundary).toBe(false); // inside the last header
    p.push(simpleStream.subarray(simpleStream.length - 3));
    expect(p.atBoundary).toBe(true);
  });

  it("turns opaque on what it cannot follow, losing no byte", () => {
    const unknown = Buffer.concat([
      greeting(),
      optionReply(Opt.GO, ACK),
      Buffer.from("garbage!"),
      simpleReply(1n),
    ]);
    const a = parse(unknown, [30], simpleRequests);
    expect(a.p.mode).toBe("opaque");
    expect(a.p.reason).toMatch(/unknown NBD reply magic/);
    expect(Buffer.concat(a.pieces.map((x) => x.data)).equals(unknown)).toBe(true);
    expect(a.p.atBoundary).toBe(false);
    // A simple reply without structured replies needs its request, or the data is unknown.
    const b = parse(Buffer.concat([greeting(), optionReply(Opt.GO, ACK), simpleReply(77n)]), []);
    expect(b.p.mode).toBe("opaque");
    // NBD_OPT_EXPORT_NAME's bare answer has no option reply header.
    const c = parse(Buffer.concat([greeting(), Buffer.alloc(134)]), []);
    expect(c.p.mode).toBe("opaque");
  });
});
