/**
 * The migration stream splitter on a recorded QEMU 7.2 stream and on edited copies of it:
 * every byte comes out exactly once whatever the chunking or the damage, pages are found
 * where QEMU put them, and anything unexpected turns the rest of the stream opaque.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { be64, fixtureLayout, readFixture } from "./stream-fixture.test-util.js";
import { MigrationStreamParser, type StreamEvent } from "./stream-parser.js";

const fixture = readFixture();
const layout = fixtureLayout(fixture);

interface Run {
  events: StreamEvent[];
  truncated: boolean;
  parser: MigrationStreamParser;
}

/** Parses `data` cut at `cuts` (sorted offsets); merges adjacent bytes events. */
function parse(data: Buffer, cuts: number[] = []): Run {
  const parser = new MigrationStreamParser();
  const raw: StreamEvent[] = [];
  let prev = 0;
  for (const c of [...cuts, data.length]) {
    raw.push(...parser.push(data.subarray(prev, c)));
    prev = c;
  }
  const end = parser.end();
  raw.push(...end.events);
  const events: StreamEvent[] = [];
  for (const e of raw) {
    const last = events.at(-1);
    if (e.kind === "bytes" && last?.kind === "bytes") last.data = Buffer.concat([last.data, e.data]);
    else events.push(e.kind === "bytes" ? { kind: "bytes", data: Buffer.from(e.data) } : e);
  }
  return { events, truncated: end.truncated, parser };
}

const joined = (r: Run): Buffer => Buffer.concat(r.events.map((e) => e.data));
const pages = (r: Run) => r.events.filter((e) => e.kind === "page");

describe("MigrationStreamParser on a recorded QEMU 7.2 stream", () => {
  it("finds the RAM pages and hands every other byte out verbatim", () => {
    const r = parse(fixture);
    expect(joined(r).equals(fixture)).toBe(true);
    expect(r.parser.machine).toBe("pc-q35-7.2");
    expect(r.parser.ramBlocks.map((b) => b.name)).toEqual([
      "pc.ram",
      "/rom@etc/acpi/tables",
      "pc.bios",
      "pc.rom",
      "/rom@etc/table-loader",
      "/rom@etc/acpi/rsdp",
    ]);
    expect(pages(r)).toHaveLength(10);
    expect(r.parser.stats).toMatchObject({ pages: 10, zeroPages: 30, ramSections: 3, pageBytes: 40960 });
    for (const p of pages(r)) {
      if (p.kind !== "page") continue;
      expect(p.block).toBe("pc.ram");
      expect(p.offset % 4096).toBe(0);
      // The event's data is exactly the 4096 bytes after the record header in the stream.
      expect(fixture.indexOf(p.data)).toBeGreaterThan(0);
    }
    // RAM is over at the first device-state section; the rest is carried as it is.
    expect(r.parser.mode).toBe("tail");
    expect(r.parser.reason).toBe('device state section "timer"');
    expect(r.truncated).toBe(false);
  });

  it("gives the same events for any chunking (property)", () => {
    const reference = parse(fixture).events;
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 1, max: fixture.length - 1 }), { maxLength: 60 }),
        (cuts) => {
          const r = parse(
            fixture,
            cuts.sort((a, b) => a - b),
          );
          expect(r.events.length).toBe(reference.length);
          r.events.forEach((e, i) => {
            const ref = reference[i]!;
            expect(e.kind).toBe(ref.kind);
            expect(e.data.equals(ref.data)).toBe(true);
          });
        },
      ),
      { numRuns: 60 },
    );
  });

  it("parses one byte at a time, holding at most one record", () => {
    const parser = new MigrationStreamParser();
    let out = 0;
    for (let i = 0; i < layout.tail; i++) {
      for (const e of parser.push(fixture.subarray(i, i + 1))) out += e.data.length;
      // Bounded memory: what is held back is never more than a page record.
      expect(i + 1 - out).toBeLessThanOrEqual(4096 + 8 + 256);
    }
    expect(parser.stats.pages).toBe(10);
  });

  it("never loses or invents a byte on damaged input (fuzz)", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(fc.integer({ min: 0, max: fixture.length - 1 }), fc.integer({ min: 0, max: 255 })),
          {
            maxLength: 8,
          },
        ),
        fc.integer({ min: 0, max: fixture.length }),
        fc.uniqueArray(fc.integer({ min: 1, max: 4000 }), { maxLength: 10 }),
        (flips, cutAt, cuts) => {
          const data = Buffer.from(fixture.subarray(0, cutAt));
          for (const [at, v] of flips) if (at < data.length) data[at] = v;
          const r = parse(
            data,
            cuts.filter((c) => c < data.length).sort((a, b) => a - b),
          );
          expect(joined(r).equals(data)).toBe(true);
        },
      ),
      { numRuns: 150 },
    );
    const noise = Buffer.from(Array.from({ length: 50_000 }, (_, i) => (i * 7919 + 13) & 0xff));
    expect(joined(parse(noise)).equals(noise)).toBe(true);
  });
});

describe("MigrationStreamParser fail-safe", () => {
  it("turns opaque at a section it does not know, and stays byte-identical", () => {
    // A live section "foo" (an iterative handler other than RAM) before the RAM END section.
    const foo = Buffer.concat([
      Buffer.from([0x01, 0, 0, 0, 9, 3]),
      Buffer.from("foo"),
      Buffer.from([0, 0, 0, 0, 0, 0, 0, 1, 0xde, 0xad]),
    ]);
    const data = Buffer.concat([fixture.subarray(0, layout.ramEnd), foo, fixture.subarray(layout.ramEnd)]);
    const r = parse(data);
    expect(joined(r).equals(data)).toBe(true);
    expect(r.parser.mode).toBe("fallback");
    expect(r.parser.reason).toBe('live section "foo" is not RAM');
    // Pages before it were found (the fixture's END section has none); nothing after it is interpreted.
    expect(pages(r)).toHaveLength(10);
    expect(r.parser.stats.ramSections).toBe(2);
  });

  it("reports a stream cut inside a page, handing the partial record out verbatim", () => {
    const firstPage = parse(fixture).events.find((e) => e.kind === "page")!;
    const at = fixture.indexOf(firstPage.data) + 1000;
    const data = fixture.subarray(0, at);
    const r = parse(data, [at - 5000]);
    expect(joined(r).equals(data)).toBe(true);
    expect(pages(r)).toHaveLength(0);
    expect(r.truncated).toBe(true);
    expect(r.parser.mode).toBe("parsing");
  });

  it("reports a stream cut between sections as truncated too", () => {
    const r = parse(fixture.subarray(0, layout.ramEnd));
    expect(r.truncated).toBe(true);
    expect(pages(r)).toHaveLength(10);
  });

  it("passes XBZRLE and compressed page records through verbatim and keeps parsing", () => {
    const xbzrle = Buffer.concat([be64(0, 0x1000 | 0x40 | 0x20), Buffer.from([1, 0, 3, 0xaa, 0xbb, 0xcc])]);
    const compressed = Buffer.concat([be64(0, 0x2000 | 0x100 | 0x20), Buffer.from([0, 0, 0, 2, 0x78, 0x9c])]);
    // Insert both right after the first PART section's first record (which names the block).
    const first = parse(fixture).events.find((e) => e.kind === "page")!;
    const at = fixture.indexOf(first.data) + 4096;
    const data = Buffer.concat([fixture.subarray(0, at), xbzrle, compressed, fixture.subarray(at)]);
    const r = parse(data);
    expect(joined(r).equals(data)).toBe(true);
    expect(r.parser.stats).toMatchObject({ xbzrlePages: 1, compressedPages: 1, pages: 10 });
    expect(r.parser.mode).toBe("tail");
  });

  it.each([
    ["RDMA hook", 0x80, "RAM record with flags 0x80"],
    ["multifd flush (QEMU 8+)", 0x200, "RAM record with flags 0x200"],
    ["obsolete FULL", 0x01, "RAM record with flags 0x1"],
  ])("refuses a %s record: the rest is opaque", (_what, flag, reason) => {
    const first = parse(fixture).events.find((e) => e.kind === "page")!;
    const at = fixture.indexOf(first.data) + 4096;
    const data = Buffer.concat([fixture.subarray(0, at), be64(0, flag), fixture.subarray(at)]);
    const r = parse(data);
    expect(joined(r).equals(data)).toBe(true);
    expect(r.parser.mode).toBe("fallback");
    expect(r.parser.reason).toBe(reason);
    expect(pages(r)).toHaveLength(1);
  });

  it("refuses a page of a block the stream never announced, or past its end", () => {
    const first = parse(fixture).events.find((e) => e.kind === "page")!;
    const at = fixture.indexOf(first.data) + 4096;
    const unknown = Buffer.concat([be64(0, 0x08), Buffer.from([3]), Buffer.from("xyz"), Buffer.alloc(4096)]);
    const far = Buffer.concat([be64(0, 0x7fff_f000 | 0x08 | 0x20), Buffer.alloc(4096)]);
    for (const [extra, reason] of [
      [unknown, 'page of unknown RAM block "xyz"'],
      [far, 'page offset 2147479552 outside block "pc.ram"'],
    ] as const) {
      const data = Buffer.concat([fixture.subarray(0, at), extra, fixture.subarray(at)]);
      const r = parse(data);
      expect(joined(r).equals(data)).toBe(true);
      expect(r.parser.reason).toBe(reason);
    }
  });

  it("refuses what is not a version 3 QEMU stream", () => {
    const r = parse(Buffer.from("GET / HTTP/1.1\r\n\r\n"));
    expect(r.parser.mode).toBe("fallback");
    expect(r.parser.reason).toMatch(/^not a QEMU migration stream/);
  });

  it("follows a stream to its end: commands, EOF and VM description", () => {
    const head = fixture.subarray(0, layout.firstPart);
    const ping = Buffer.from([0x08, 0, 2, 0, 4, 0, 0, 0, 1]);
    const json = Buffer.from('{"page_size": 4096}');
    const vmdesc = Buffer.concat([Buffer.from([0x00, 0x06]), Buffer.alloc(4), json]);
    vmdesc.writeUInt32BE(json.length, 2);
    const data = Buffer.concat([head, ping, vmdesc]);
    const r = parse(data, [3, head.length + 2]);
    expect(joined(r).equals(data)).toBe(true);
    expect(r.parser.mode).toBe("done");
    expect(r.parser.stats.commands).toBe(1);
    expect(r.truncated).toBe(false);
    const more = parse(Buffer.concat([data, Buffer.from([0])]));
    expect(more.parser.mode).toBe("fallback");
  });

  it("refuses MEM_SIZE after a post-copy advise with huge pages (per-block page sizes)", () => {
    const advise = Buffer.concat([Buffer.from([0x08, 0, 3, 0, 16]), be64(0, 0x201000), be64(0, 4096)]);
    // Header + configuration, then the advise, then the RAM section.
    const config = 8 + 1 + 4 + "pc-q35-7.2".length;
    const data = Buffer.concat([fixture.subarray(0, config), advise, fixture.subarray(config)]);
    const r = parse(data);
    expect(joined(r).equals(data)).toBe(true);
    expect(r.parser.reason).toBe("post-copy with huge pages (per-block page sizes)");
  });
});
