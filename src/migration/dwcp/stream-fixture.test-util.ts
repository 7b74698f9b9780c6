/**
 * The recorded QEMU 7.2 stream fixture shared by the parser and relay unit tests, and
 * small builders for hand-made streams. testdata/README.md says how the fixture was made.
 */
import { readFileSync } from "node:fs";
import path from "node:path";

/** A real `migrate` stream of a q35 guest (pc-q35-7.2, 128 MiB), reduced to 10 pages + 30 zero pages. */
export function readFixture(): Buffer {
  return readFileSync(path.join(import.meta.dirname, "testdata", "qemu72-q35-small.stream"));
}

/** Byte ranges of the fixture's parts, found by scanning its known layout. */
export interface FixtureLayout {
  /** Offset of the first SECTION_PART (after the ram START section and its footer). */
  firstPart: number;
  /** Offset of the SECTION_END of the ram section. */
  ramEnd: number;
  /** Offset of the first device-state section (SECTION_FULL "timer"). */
  tail: number;
}

export function fixtureLayout(f: Buffer): FixtureLayout {
  const find = (needle: Buffer, from: number): number => {
    const i = f.indexOf(needle, from);
    if (i < 0) throw new Error("fixture layout changed");
    return i;
  };
  // START footer: 0x7e + section id 2, directly followed by PART (0x02) of section 2.
  const firstPart = find(Buffer.from([0x7e, 0, 0, 0, 2, 0x02, 0, 0, 0, 2]), 0) + 5;
  const ramEnd = find(Buffer.from([0x7e, 0, 0, 0, 2, 0x03, 0, 0, 0, 2]), firstPart) + 5;
  const tail = find(Buffer.from([0x7e, 0, 0, 0, 2, 0x04]), ramEnd) + 5;
  return { firstPart, ramEnd, tail };
}

/** be64 helper for hand-made records. */
export function be64(hi: number, lo: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(hi, 0);
  b.writeUInt32BE(lo >>> 0, 4);
  return b;
}
