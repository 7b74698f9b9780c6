/**
 * The recorded QEMU streams shared by the parser, splitter and relay unit tests (one per
 * QEMU version the relay supports), and small builders for hand-made records.
 * testdata/README.md says how each recording was made.
 */
import { readFileSync } from "node:fs";
import path from "node:path";

const read = (file: string): Buffer => readFileSync(path.join(import.meta.dirname, "testdata", file));

/** A real `migrate` stream of a q35 guest (128 MiB), reduced to 10 pages + 30 zero pages. */
export interface StreamFixture {
  /** "QEMU 7.2", for test names. */
  qemu: string;
  file: string;
  data: Buffer;
  /** The machine type in its configuration section. */
  machine: string;
  /** Top-level commands QEMU wrote (10.0: SWITCHOVER_START before the RAM END section). */
  commands: number;
}

export const STREAM_FIXTURES: readonly StreamFixture[] = [
  { qemu: "QEMU 7.2", file: "qemu72-q35-small.stream", machine: "pc-q35-7.2", commands: 0 },
  { qemu: "QEMU 10.0", file: "qemu10-q35-small.stream", machine: "pc-q35-10.0", commands: 1 },
].map((f) => ({ ...f, data: read(f.file) }));

/**
 * What a QEMU block mirror's NBD client sent into a QEMU 10 export (`socat -r` capture):
 * options, two WRITE_ZEROES, aligned writes of 4 KiB at 0 (0x5a) and 8 KiB at 64 KiB
 * (0xa5), a 512-byte write at 1 MiB, three FLUSHes and DISC.
 */
export interface NbdFixture {
  qemu: string;
  file: string;
  data: Buffer;
  /** Whether the client negotiated extended headers (its requests are then 32 bytes). */
  extended: boolean;
  /** Page numbers of the aligned writes, in the order the mirror sent them. */
  pageNos: number[];
}

export const NBD_FIXTURES: readonly NbdFixture[] = [
  { qemu: "QEMU 7.2", file: "qemu72-mirror-client.nbd", extended: false, pageNos: [16, 17, 0] },
  { qemu: "QEMU 10.0", file: "qemu10-mirror-client.nbd", extended: true, pageNos: [16, 17, 0] },
].map((f) => ({ ...f, data: read(f.file) }));

/** Byte ranges of a stream fixture's parts, found by scanning its known layout. */
export interface FixtureLayout {
  /** End of the header and configuration section (where the first record starts). */
  configEnd: number;
  /** Section id QEMU gave the "ram" section (7.2: 2, 10.0: 1). */
  ramId: number;
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
  // Header (8), CONFIGURATION (1), name length (4), name; neither fixture has subsections.
  const configEnd = 13 + f.readUInt32BE(9);
  const ramId = f.readUInt32BE(configEnd + 1);
  const id = Buffer.alloc(4);
  id.writeUInt32BE(ramId);
  const footer = Buffer.concat([Buffer.from([0x7e]), id]);
  const firstPart = find(Buffer.concat([footer, Buffer.from([0x02]), id]), configEnd) + 5;
  // The END section of both fixtures is its header, EOS and footer.
  const ramEnd = find(Buffer.concat([Buffer.from([0x03]), id, be64(0, 0x10), footer]), firstPart);
  const tail = find(Buffer.concat([footer, Buffer.from([0x04])]), ramEnd) + 5;
  return { configEnd, ramId, firstPart, ramEnd, tail };
}

/** be64 helper for hand-made records. */
export function be64(hi: number, lo: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(hi, 0);
  b.writeUInt32BE(lo >>> 0, 4);
  return b;
}

/** A QEMU_VM_COMMAND record. */
export function command(cmd: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.from([0x08, 0, 0, 0, 0]);
  h.writeUInt16BE(cmd, 1);
  h.writeUInt16BE(payload.length, 3);
  return Buffer.concat([h, payload]);
}
