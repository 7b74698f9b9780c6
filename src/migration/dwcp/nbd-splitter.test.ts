/**
 * The NBD request splitter on a synthetic client stream built to the protocol: every byte
 * comes out exactly once whatever the chunking, aligned writes become pages numbered by
 * offset, and anything it does not know turns the rest of the connection verbatim.
 */
import { createHash, randomBytes } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { NbdRequestSplitter } from "./nbd-splitter.js";
import type { SplitEvent } from "./splitter.js";

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
    expect(s.stats).toEqual({ requests: 6, writes: 3, pageBytes: 3 * 4096, verbatimWriteBytes: 1000 });
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

  it("passes the rest through verbatim after a record it does not know", () => {
    const extended = Buffer.alloc(32);
    extended.writeUInt32BE(0x21e41c71, 0); // NBD_EXTENDED_REQUEST_MAGIC: not spoken by QEMU 7.2
    const later = request(1, 0, 4096, pageA);
    const data = Buffer.concat([stream.subarray(0, 4 + 16 + 10), extended, later]);
    const { events, s } = split(data, [50]);
    expect(joined(events).equals(data)).toBe(true);
    expect(pages(events)).toEqual([]);
    expect(s.mode).toBe("fallback");
    expect(s.reason).toContain("21e41c71");
  });

  it("reports a connection that ends inside a write as truncated", () => {
    const data = stream.subarray(0, 4 + 16 + 10 + 28 + 5000);
    const { events, truncated } = split(data, [4000]);
    expect(joined(events).equals(data)).toBe(true);
    expect(truncated).toBe(true);
  });
});
