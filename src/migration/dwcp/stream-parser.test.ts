/**
 * The migration stream splitter on recorded QEMU 7.2 and 10.0 streams and on edited
 * copies of them: every byte comes out exactly once whatever the chunking or the damage,
 * pages are found where QEMU put them, and anything unexpected turns the rest of the
 * stream opaque.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { be64, command, fixtureLayout, STREAM_FIXTURES } from "./stream-fixture.test-util.js";
import { MigrationStreamParser, type StreamEvent } from "./stream-parser.js";

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

describe.each(STREAM_FIXTURES)("MigrationStreamParser on a recorded $qemu stream", (fx) => {
  const fixture = fx.data;
  const layout = fixtureLayout(fixture);

  it("finds the RAM pages and hands every other byte out verbatim", () => {
    const r = parse(fixture);
    expect(joined(r).equals(fixture)).toBe(true);
    expect(r.parser.machine).toBe(fx.machine);
    expect(r.parser.ramBlocks.map((b) => b.name)).toEqual([
      "pc.ram",
      "/rom@etc/acpi/tables",
      "pc.bios",
      "pc.rom",
      "/rom@etc/table-loader",
      "/rom@etc/acpi/rsdp",
    ]);
    expect(pages(r)).toHaveLength(10);
    expect(r.parser.stats).toMatchObject({
      pages: 10,
      zeroPages: 30,
      ramSections: 3,
      pageBytes: 40960,
      commands: fx.commands,
      multifdFlushes: 0,
    });
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

describe.each(STREAM_FIXTURES)("MigrationStreamParser fail-safe ($qemu stream)", (fx) => {
  const fixture = fx.data;
  const layout = fixtureLayout(fixture);
  /** Just after the first page record's data (the record that names pc.ram). */
  const afterFirstPage = fixture.indexOf(parse(fixture).events.find((e) => e.kind === "page")!.data) + 4096;
  const insertAt = (at: number, ...extra: Buffer[]): Buffer =>
    Buffer.concat([fixture.subarray(0, at), ...extra, fixture.subarray(at)]);

  it("turns opaque at a section it does not know, and stays byte-identical", () => {
    // A live section "foo" (an iterative handler other than RAM) before the RAM END section.
    const foo = Buffer.concat([
      Buffer.from([0x01, 0, 0, 0, 9, 3]),
      Buffer.from("foo"),
      Buffer.from([0, 0, 0, 0, 0, 0, 0, 1, 0xde, 0xad]),
    ]);
    const data = insertAt(layout.ramEnd, foo);
    const r = parse(data);
    expect(joined(r).equals(data)).toBe(true);
    expect(r.parser.mode).toBe("fallback");
    expect(r.parser.reason).toBe('live section "foo" is not RAM');
    // Pages before it were found (the fixture's END section has none); nothing after it is interpreted.
    expect(pages(r)).toHaveLength(10);
    expect(r.parser.stats.ramSections).toBe(2);
  });

  it("treats device state before the end of RAM (an early-setup device) as a fallback, not the tail", () => {
    const name = Buffer.from("virtio-mem-early");
    const early = Buffer.concat([
      Buffer.from([0x04, 0, 0, 0, 9, name.length]),
      name,
      Buffer.from([0, 0, 0, 0, 0, 0, 0, 1, 0xde, 0xad]),
    ]);
    const data = insertAt(layout.firstPart, early);
    const r = parse(data);
    expect(joined(r).equals(data)).toBe(true);
    expect(r.parser.mode).toBe("fallback");
    expect(r.parser.reason).toBe('device state section "virtio-mem-early" before the end of RAM');
    expect(pages(r)).toHaveLength(0);
  });

  it("reports a stream cut inside a page, handing the partial record out verbatim", () => {
    const at = afterFirstPage - 4096 + 1000;
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
    const data = insertAt(afterFirstPage, xbzrle, compressed);
    const r = parse(data);
    expect(joined(r).equals(data)).toBe(true);
    expect(r.parser.stats).toMatchObject({ xbzrlePages: 1, compressedPages: 1, pages: 10 });
    expect(r.parser.mode).toBe("tail");
  });

  it("carries a multifd flush mark (QEMU ≥ 8, multifd only) and keeps parsing", () => {
    const data = insertAt(afterFirstPage, be64(0, 0x200));
    const r = parse(data);
    expect(joined(r).equals(data)).toBe(true);
    expect(r.parser.stats).toMatchObject({ multifdFlushes: 1, pages: 10, zeroPages: 30 });
    expect(r.parser.mode).toBe("tail");
  });

  it.each([
    ["RDMA hook", be64(0, 0x80), "RAM record with flags 0x80"],
    ["multifd flush with CONTINUE", be64(0, 0x220), "RAM record with flags 0x220"],
    ["multifd flush with an offset", be64(0, 0x1200), "multifd flush with offset 4096"],
    ["obsolete FULL", be64(0, 0x01), "RAM record with flags 0x1"],
  ])("refuses a %s record: the rest is opaque", (_what, record, reason) => {
    const data = insertAt(afterFirstPage, record);
    const r = parse(data);
    expect(joined(r).equals(data)).toBe(true);
    expect(r.parser.mode).toBe("fallback");
    expect(r.parser.reason).toBe(reason);
    expect(pages(r)).toHaveLength(1);
  });

  it("refuses a page of a block the stream never announced, or past its end", () => {
    const unknown = Buffer.concat([be64(0, 0x08), Buffer.from([3]), Buffer.from("xyz"), Buffer.alloc(4096)]);
    const far = Buffer.concat([be64(0, 0x7fff_f000 | 0x08 | 0x20), Buffer.alloc(4096)]);
    for (const [extra, reason] of [
      [unknown, 'page of unknown RAM block "xyz"'],
      [far, 'page offset 2147479552 outside block "pc.ram"'],
    ] as const) {
      const data = insertAt(afterFirstPage, extra);
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
    const ping = command(2, Buffer.from([0, 0, 0, 1]));
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

  it("reads the commands a return path and post-copy add at the start (as QEMU 10.0 wrote them)", () => {
    // Recorded with postcopy-ram on: OPEN_RETURN_PATH, PING 1, POSTCOPY_ADVISE (4 KiB pages).
    const start = Buffer.concat([
      command(1),
      command(2, Buffer.from([0, 0, 0, 1])),
      command(3, Buffer.concat([be64(0, 4096), be64(0, 4096)])),
    ]);
    const data = insertAt(layout.configEnd, start);
    const r = parse(data, [layout.configEnd + 7]);
    expect(joined(r).equals(data)).toBe(true);
    expect(r.parser.stats).toMatchObject({ commands: fx.commands + 3, pages: 10 });
    expect(r.parser.mode).toBe("tail");
  });

  it("reads a SWITCHOVER_START command (QEMU 10.0) before the END section", () => {
    const data = fx.commands > 0 ? fixture : insertAt(layout.ramEnd, command(11));
    const r = parse(data);
    expect(r.parser.stats.commands).toBe(1);
    expect(r.parser.mode).toBe("tail");
  });

  it.each([
    ["an unknown command", command(12), "unknown command 12"],
    ["the invalid command 0", command(0), "unknown command 0"],
    ["a PING of the wrong length", command(2, Buffer.from([0, 1])), "command 2 of length 2, expected 4"],
    ["a PACKAGED of the wrong length", command(7, Buffer.alloc(8)), "command 7 of length 8, expected 4"],
    [
      "a SWITCHOVER_START with a payload",
      command(11, Buffer.from([1])),
      "command 11 of length 1, expected 0",
    ],
  ])("refuses %s: the rest is opaque", (_what, cmd, reason) => {
    const data = insertAt(layout.ramEnd, cmd);
    const r = parse(data);
    expect(joined(r).equals(data)).toBe(true);
    expect(r.parser.mode).toBe("fallback");
    expect(r.parser.reason).toBe(reason);
    expect(pages(r)).toHaveLength(10);
  });

  it("refuses MEM_SIZE after a post-copy advise with huge pages (per-block page sizes)", () => {
    const advise = command(3, Buffer.concat([be64(0, 0x201000), be64(0, 4096)]));
    const data = insertAt(layout.configEnd, advise);
    const r = parse(data);
    expect(joined(r).equals(data)).toBe(true);
    expect(r.parser.reason).toBe("post-copy with huge pages (per-block page sizes)");
  });

  /** The fixture as QEMU writes it with `caps` in the configuration and, for x-ignore-shared, block addresses. */
  function withCapabilities(caps: string[]): Buffer {
    const name = Buffer.from("configuration/capabilities");
    const list = caps.map((c) => Buffer.concat([Buffer.from([c.length]), Buffer.from(c)]));
    const count = Buffer.alloc(8);
    count.writeUInt32BE(1, 0); // subsection version
    count.writeUInt32BE(caps.length, 4);
    const sub = Buffer.concat([Buffer.from([0x05, name.length]), name, count, ...list]);
    const parts = [fixture.subarray(0, layout.configEnd), sub];
    // START header: type, id, idstr "ram", instance, version; then MEM_SIZE and the blocks.
    let at = layout.configEnd + 1 + 4 + 1 + 3 + 8 + 8;
    parts.push(fixture.subarray(layout.configEnd, at));
    for (let left = 6; left > 0; left--) {
      const end = at + 1 + fixture[at]! + 8;
      parts.push(fixture.subarray(at, end));
      if (caps.includes("x-ignore-shared")) parts.push(be64(0, 0xfeed0000)); // mr->addr
      at = end;
    }
    parts.push(fixture.subarray(at));
    return Buffer.concat(parts);
  }

  it("reads the block addresses x-ignore-shared adds to MEM_SIZE", () => {
    const data = withCapabilities(["x-ignore-shared"]);
    const r = parse(data);
    expect(joined(r).equals(data)).toBe(true);
    expect(r.parser.ramBlocks).toHaveLength(6);
    expect(r.parser.stats).toMatchObject({ pages: 10, zeroPages: 30 });
    expect(r.parser.mode).toBe("tail");
  });

  it.each([
    ["mapped-ram", "mapped-ram: pages at file offsets, not in records"],
    ["x-future", 'unknown capability "x-future" in the configuration'],
  ])("refuses a stream whose configuration lists %s", (cap, reason) => {
    const data = withCapabilities([cap]);
    const r = parse(data);
    expect(joined(r).equals(data)).toBe(true);
    expect(r.parser.mode).toBe("fallback");
    expect(r.parser.reason).toBe(reason);
    expect(pages(r)).toHaveLength(0);
  });
});
