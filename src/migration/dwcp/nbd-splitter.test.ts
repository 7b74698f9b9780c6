/**
 * The NBD request splitter on synthetic client streams built to the protocol (compact and
 * extended request headers) and on the recorded client side of QEMU 7.2's and 10.0's
 * block mirrors: every byte comes out exactly once whatever the chunking, aligned writes
 * become pages numbered by offset, and anything it does not know turns the rest of the
 * connection verbatim.
 */
import { createHash, randomBytes } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { NbdRequestSplitter } from "./nbd-splitter.js";
import type { SplitEvent } from "./splitter.js";
import { NBD_FIXTURES } from "./stream-fixture.test-util.js";

function option(code: number, data: Buffer): Buffer {
  const h = Buffer.alloc(16);
  h.write("IHAVEOPT", 0, "latin1");
  h.writeUInt32BE(code, 8);
  h.writeUInt32BE(data.length, 12);
  return Buffer.concat([h, data]);
}

function request(type: number, offset: number, length: number, payload?: Buffer): Buffer {
  const h = Buffer.alloc(28);
  h.writeUInt32BE(0x25609513, 0);
  h.writeUInt16BE(type, 6);
  h.writeBigUInt64BE(BigInt(offset), 16);
  h.writeUInt32BE(length, 24);
  return payload ? Buffer.concat([h, payload]) : h;
}

/** An extended request (NBD_OPT_EXTENDED_HEADERS): 32 bytes, 64-bit length. */
function extRequest(type: number, offset: number, length: bigint, payload?: Buffer, flags = 0): Buffer {
  const h = Buffer.alloc(32);
  h.writeUInt32BE(0x21e41c71, 0);
  h.writeUInt16BE(flags, 4);
  h.writeUInt16BE(type, 6);
  h.writeBigUInt64BE(7n, 8);
  h.writeBigUInt64BE(BigInt(offset), 16);
  h.writeBigUInt64BE(length, 24);
  return payload ? Buffer.concat([h, payload]) : h;
}

const pageA = randomBytes(4096);
const pageB = randomBytes(4096);
const odd = randomBytes(1000);
const stream = Buffer.concat([
  Buffer.from([0, 0, 0, 3]), // client flags
  option(7, Buffer.from("\u0000\u0000\u0000\u0004disk\u0000\u0000", "latin1")), // NBD_OPT_GO
  request(1, 65536, 8192, Buffer.concat([pageA, pageB])), // aligned write: 2 pages
  request(0, 0, 4096), // read
  request(1, 100, 1000, odd), // unaligned write: verbatim
  request(3, 0, 0), // flush
  request(1, 0, 4096, Buffer.alloc(4096)), // zero page
  request(2, 0, 0), // disconnect
]);

function split(
  data: Buffer,
  cuts: number[],
): { events: SplitEvent[]; s: NbdRequestSplitter; truncated: boolean } {
  const s = new NbdRequestSplitter();
  const events: SplitEvent[] = [];
  let prev = 0;
  for (const c of [...cuts, data.length]) {
    events.push(...s.push(data.subarray(prev, c)));
    prev = c;
  }
  const end = s.end();
  events.push(...end.events);
  return { events, s, truncated: end.truncated };
}

const joined = (events: SplitEvent[]): Buffer => Buffer.concat(events.map((e) => e.data));
const pages = (events: SplitEvent[]) =>
  events.flatMap((e) => (e.kind === "page" ? [{ pageNo: e.pageNo, data: e.data }] : []));

/** Page numbers and contents in one string, cheap to compare. */
const digestOf = (events: SplitEvent[]): string =>
  pages(events)
    .map((p) => `${p.pageNo}:${createHash("sha256").update(p.data).digest("hex")}`)
    .join(",");

describe("NbdRequestSplitter", () => {
  it("turns aligned writes into pages numbered by offset and keeps every other byte", () => {
    const { events, s, truncated } = split(stream, []);
    expect(joined(events).equals(stream)).toBe(true);
    expect(pages(events).map((p) => p.pageNo)).toEqual([16, 17, 0]);
    expect(pages(events)[0]!.data.equals(pageA)).toBe(true);
    expect(pages(events)[1]!.data.equals(pageB)).toBe(true);
    expect(s.stats).toEqual({
      requests: 6,
      extendedRequests: 0,
      writes: 3,
      pageBytes: 3 * 4096,
      verbatimWriteBytes: 1000,
      otherPayloadBytes: 0,
    });
    expect(s.mode).toBe("done");
    expect(truncated).toBe(false);
  });

  it("gives the same result however the input is cut", () => {
    const whole = split(stream, []);
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 1, max: stream.length - 1 }), { maxLength: 40 }),
        (cuts) => {
          const r = split(
            stream,
            [...cuts].sort((a, b) => a - b),
          );
          expect(joined(r.events).equals(stream)).toBe(true);
          expect(digestOf(r.events)).toBe(digestOf(whole.events));
        },
      ),
      { numRuns: 200 },
    );
  });

  it("passes the rest through verbatim after a record it does not know (TLS after STARTTLS)", () => {
    const clientHello = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc]);
    const later = request(1, 0, 4096, pageA);
    const data = Buffer.concat([stream.subarray(0, 4 + 16 + 10), clientHello, later]);
    const { events, s } = split(data, [50]);
    expect(joined(events).equals(data)).toBe(true);
    expect(pages(events)).toEqual([]);
    expect(s.mode).toBe("fallback");
    expect(s.reason).toBe("unknown NBD record magic 0x16030102 after 0 requests");
  });

  it("reads extended requests: 64-bit lengths, payloads only for writes and PAYLOAD_LEN", () => {
    const status = Buffer.from([0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1]); // effect length, context id
    const ext = Buffer.concat([
      Buffer.from([0, 0, 0, 3]),
      option(11, Buffer.alloc(0)), // NBD_OPT_EXTENDED_HEADERS
      option(7, Buffer.from("\u0000\u0000\u0000\u0004disk\u0000\u0000", "latin1")),
      extRequest(6, 4096, 5n << 32n, undefined, 2), // WRITE_ZEROES of 20 GiB, NO_HOLE: no payload
      extRequest(1, 8192, 8192n, Buffer.concat([pageB, pageA])), // aligned write: pages 2, 3
      extRequest(7, 0, BigInt(status.length), status, 1 << 5), // BLOCK_STATUS with a payload
      extRequest(1, 4096 + 17, 1000n, odd), // unaligned write: verbatim
      request(0, 0, 4096, undefined), // a compact READ, still understood
      extRequest(1, 0, 4096n, pageA, 1 << 5), // a write may carry PAYLOAD_LEN too
      extRequest(2, 0, 0n), // disconnect
    ]);
    const { events, s, truncated } = split(ext, []);
    expect(joined(events).equals(ext)).toBe(true);
    expect(pages(events).map((p) => p.pageNo)).toEqual([2, 3, 0]);
    expect(pages(events)[0]!.data.equals(pageB)).toBe(true);
    expect(s.stats).toEqual({
      requests: 7,
      extendedRequests: 6,
      writes: 3,
      pageBytes: 3 * 4096,
      verbatimWriteBytes: 1000,
      otherPayloadBytes: status.length,
    });
    expect(s.mode).toBe("done");
    expect(truncated).toBe(false);
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: ext.length - 1 }), { maxLength: 40 }), (cuts) => {
        const r = split(
          ext,
          [...cuts].sort((a, b) => a - b),
        );
        expect(joined(r.events).equals(ext)).toBe(true);
        expect(digestOf(r.events)).toBe(digestOf(events));
      }),
      { numRuns: 200 },
    );
  });

  it("gives up on an extended length it cannot follow as a number", () => {
    const data = Buffer.concat([
      Buffer.from([0, 0, 0, 3]),
      extRequest(1, 0, 1n << 60n),
      pageA,
      request(1, 0, 4096, pageA),
    ]);
    const { events, s } = split(data, [40]);
    expect(joined(events).equals(data)).toBe(true);
    expect(pages(events)).toEqual([]);
    expect(s.mode).toBe("fallback");
    expect(s.reason).toBe(`NBD request at 0 of ${1n << 60n} bytes after 1 requests`);
  });

  it("reports a connection that ends inside a write as truncated", () => {
    const data = stream.subarray(0, 4 + 16 + 10 + 28 + 5000);
    const { events, truncated } = split(data, [4000]);
    expect(joined(events).equals(data)).toBe(true);
    expect(truncated).toBe(true);
  });
});

describe.each(NBD_FIXTURES)("NbdRequestSplitter on $qemu's recorded mirror client ($file)", (fx) => {
  it("finds the mirror's aligned writes and nothing else, for any chunking", () => {
    const whole = split(fx.data, []);
    expect(joined(whole.events).equals(fx.data)).toBe(true);
    expect(pages(whole.events).map((p) => p.pageNo)).toEqual(fx.pageNos);
    for (const p of pages(whole.events))
      expect(p.data.every((b) => b === (p.pageNo === 0 ? 0x5a : 0xa5))).toBe(true);
    // Two WRITE_ZEROES, three writes, three FLUSHes, DISC; the 512-byte tail write stays verbatim.
    expect(whole.s.stats).toEqual({
      requests: 9,
      extendedRequests: fx.extended ? 9 : 0,
      writes: 3,
      pageBytes: 3 * 4096,
      verbatimWriteBytes: 512,
      otherPayloadBytes: 0,
    });
    expect(whole.s.mode).toBe("done");
    expect(whole.truncated).toBe(false);
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 1, max: fx.data.length - 1 }), { maxLength: 40 }),
        (cuts) => {
          const r = split(
            fx.data,
            [...cuts].sort((a, b) => a - b),
          );
          expect(joined(r.events).equals(fx.data)).toBe(true);
          expect(digestOf(r.events)).toBe(digestOf(whole.events));
        },
      ),
      { numRuns: 100 },
    );
  });

  it("never loses or invents a byte on damaged input (fuzz)", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(fc.integer({ min: 0, max: fx.data.length - 1 }), fc.integer({ min: 0, max: 255 })),
          {
            maxLength: 6,
          },
        ),
        fc.integer({ min: 0, max: fx.data.length }),
        (flips, cutAt) => {
          const data = Buffer.from(fx.data.subarray(0, cutAt));
          for (const [at, v] of flips) if (at < data.length) data[at] = v;
          expect(joined(split(data, [Math.floor(data.length / 3)]).events).equals(data)).toBe(true);
        },
      ),
      { numRuns: 150 },
    );
  });
});
