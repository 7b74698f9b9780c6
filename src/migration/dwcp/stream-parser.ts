/**
 * Incremental splitter for QEMU's outgoing migration stream as QEMU 7.2 and 10.0 write it
 * (docs/migration-stream.md, which also lists how the two differ):
 * owns finding the RAM page records (block, offset, 4 KiB of data) inside the byte stream
 * so they can travel through HDE, and handing everything else out verbatim.
 *
 * Invariant the relay's safety rests on: every input byte comes out exactly once, in
 * order, either inside a `bytes` event or as the data of a `page` event; the parser never
 * invents, drops or rewrites a byte. Understanding the stream only decides *which* event
 * a byte lands in. When the stream stops matching what the parser expects, it stops
 * interpreting ("fallback") and the rest comes out as `bytes`: the rebuilt stream is still
 * byte-identical, it just gets no page encoding. The first device-state section (whose
 * length only the device's vmstate schema knows) ends interpretation the same way
 * ("tail"); by then QEMU has sent all of RAM. Device state before the RAM section ended
 * (an early-setup device) is a fallback instead: the RAM after it goes unencoded.
 *
 * Memory is bounded: at most one unfinished record (< 4.5 KiB) is held between pushes;
 * long opaque runs (command payloads, the VM description, the tail) stream through.
 */
import { ByteQueue } from "./byte-queue.js";
import {
  CAP_IGNORE_SHARED,
  CAP_MAPPED_RAM,
  Cmd,
  COMMAND_LENGTH,
  FILE_MAGIC,
  FILE_VERSION,
  FLAG_MASK,
  MAX_COMPRESSED_PAGE,
  MAX_MACHINE_NAME,
  RAM_SECTION_VERSION,
  RamFlag,
  TARGET_PAGE_BITS,
  TARGET_PAGE_SIZE,
  Top,
  XBZRLE_ENCODING,
} from "./stream-format.js";

/** A piece of the stream: verbatim bytes, or one RAM page's 4096 data bytes. */
export type StreamEvent =
  | { kind: "bytes"; data: Buffer }
  | { kind: "page"; block: string; blockIndex: number; offset: number; data: Buffer };

/**
 * parsing: records are being interpreted; tail: the device-state part began (expected);
 * fallback: the stream did not match (see `reason`); done: EOF and VM description seen.
 */
export type ParserMode = "parsing" | "tail" | "fallback" | "done";

/** What the parser saw. */
export interface ParserStats {
  bytesIn: number;
  /** Bytes handed out as page data. */
  pageBytes: number;
  pages: number;
  zeroPages: number;
  /** XBZRLE and compressed page records passed through verbatim. */
  xbzrlePages: number;
  compressedPages: number;
  ramSections: number;
  commands: number;
  /** MULTIFD_FLUSH marks (multifd only: the pages themselves travel on other connections). */
  multifdFlushes: number;
}

/** A RAM block announced by the MEM_SIZE record. */
export interface RamBlock {
  name: string;
  index: number;
  length: number;
}

enum S {
  HEADER,
  CONFIG_OR_TOP,
  CONFIG_SUB,
  CAPS,
  TOP,
  RAM,
  BLOCKS,
  FOOTER,
  AFTER_EOF,
  DONE,
  PASS,
  OPAQUE,
}

/** Page offsets must fit the relay's page numbering (block index × 2^32 pages). */
const MAX_OFFSET = 2 ** 44;
const TWO32 = 2 ** 32;
const MAX_CAPS = 64;

/** Splits a migration stream pushed in chunks of any size. */
export class MigrationStreamParser {
  private readonly q = new ByteQueue();
  private state: S = S.HEADER;
  private modeValue: ParserMode = "parsing";
  private reasonValue: string | null = null;
  private out: StreamEvent[] = [];
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private passLeft = 0;
  private passReturn: S = S.TOP;
  private capsLeft = 0;
  private memLeft = 0;
  private ramSectionId = -1;
  /** The RAM section's END was seen: device state from here on is the expected tail. */
  private ramEnded = false;
  private currentSection = -1;
  private readonly blocks = new Map<string, RamBlock>();
  private lastBlock: RamBlock | null = null;
  private ignoreShared = false;
  private postcopyHugePages = false;
  private ended = false;
  private machineName: string | null = null;
  /** Counters. */
  readonly stats: ParserStats = {
    bytesIn: 0,
    pageBytes: 0,
    pages: 0,
    zeroPages: 0,
    xbzrlePages: 0,
    compressedPages: 0,
    ramSections: 0,
    commands: 0,
    multifdFlushes: 0,
  };

  /** Where interpretation stands; see ParserMode. */
  get mode(): ParserMode {
    return this.modeValue;
  }

  /** Why the parser stopped interpreting (tail or fallback), if it did. */
  get reason(): string | null {
    return this.reasonValue;
  }

  /** The machine type from the configuration section. */
  get machine(): string | null {
    return this.machineName;
  }

  /** RAM blocks in announcement order. */
  get ramBlocks(): RamBlock[] {
    return [...this.blocks.values()];
  }

  /** Feeds a chunk; returns the events it completed. */
  push(chunk: Buffer): StreamEvent[] {
    if (this.ended) throw new Error("MigrationStreamParser.push after end");
    this.stats.bytesIn += chunk.length;
    this.q.push(chunk);
    while (this.step()) {
      // Each step consumes a whole record part or changes state; stop when input runs short.
    }
    return this.drain();
  }

  /**
   * Ends the input. Bytes of an unfinished record come out verbatim. `truncated` is true
   * when the stream stopped inside a structure the parser was interpreting; in tail or
   * fallback mode the parser cannot tell (the destination QEMU will).
   */
  end(): { events: StreamEvent[]; truncated: boolean } {
    this.ended = true;
    const interpreting = this.modeValue === "parsing";
    const truncated =
      (interpreting && (this.q.length > 0 || this.state !== S.AFTER_EOF)) ||
      (this.state === S.PASS && this.passLeft > 0 && this.passReturn === S.DONE);
    if (this.q.length > 0) this.emitBytes(this.q.take(this.q.length));
    return { events: this.drain(), truncated };
  }

  private drain(): StreamEvent[] {
    this.flushBytes();
    const events = this.out;
    this.out = [];
    return events;
  }

  private emitBytes(parts: Buffer[]): void {
    for (const p of parts) {
      this.pending.push(p);
      this.pendingBytes += p.length;
    }
  }

  private flushBytes(): void {
    if (this.pendingBytes === 0) return;
    const data =
      this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
    this.out.push({ kind: "bytes", data });
    this.pending = [];
    this.pendingBytes = 0;
  }

  /** Stops interpreting: the rest of the stream is opaque. */
  private stopParsing(mode: "tail" | "fallback", reason: string): true {
    this.modeValue = mode;
    this.reasonValue = reason;
    this.state = S.OPAQUE;
    return true;
  }

  private fallback(reason: string): true {
    return this.stopParsing("fallback", reason);
  }

  private pass(n: number, then: S): void {
    this.passLeft = n;
    this.passReturn = then;
    this.state = S.PASS;
  }

  private has(n: number): boolean {
    return this.q.length >= n;
  }

  /** Runs one step; false when it needs more input. */
  private step(): boolean {
    const q = this.q;
    switch (this.state) {
      case S.HEADER: {
        if (!this.has(8)) return false;
        const magic = q.u32(0);
        const version = q.u32(4);
        this.emitBytes(q.take(8));
        if (magic !== FILE_MAGIC)
          return this.fallback(`not a QEMU migration stream (magic 0x${magic.toString(16)})`);
        if (version !== FILE_VERSION)
          return this.fallback(`stream version ${version}, expected ${FILE_VERSION}`);
        this.state = S.CONFIG_OR_TOP;
        return true;
      }
      case S.CONFIG_OR_TOP: {
        if (!this.has(1)) return false;
        if (q.u8(0) !== Top.CONFIGURATION) {
          this.state = S.TOP;
          return true;
        }
        if (!this.has(5)) return false;
        const len = q.u32(1);
        if (len > MAX_MACHINE_NAME) return this.fallback(`machine name of ${len} bytes`);
        if (!this.has(5 + len)) return false;
        this.machineName = q.peek(5, len).toString("latin1");
        this.emitBytes(q.take(5 + len));
        this.state = S.CONFIG_SUB;
        return true;
      }
      case S.CONFIG_SUB:
        return this.configSubsection();
      case S.CAPS: {
        if (this.capsLeft === 0) {
          this.state = S.CONFIG_SUB;
          return true;
        }
        if (!this.has(1)) return false;
        const len = q.u8(0);
        if (!this.has(1 + len)) return false;
        const cap = q.peek(1, len).toString("latin1");
        this.emitBytes(q.take(1 + len));
        this.capsLeft--;
        if (cap === CAP_IGNORE_SHARED) {
          this.ignoreShared = true;
          return true;
        }
        if (cap === CAP_MAPPED_RAM) return this.fallback("mapped-ram: pages at file offsets, not in records");
        // QEMU lists only capabilities that change the format: an unknown one may change it.
        return this.fallback(`unknown capability "${cap}" in the configuration`);
      }
      case S.TOP:
        return this.topLevel();
      case S.RAM:
        return this.ramRecord();
      case S.BLOCKS:
        return this.blockEntry();
      case S.FOOTER: {
        if (!this.has(1)) return false;
        // Footers are a machine-type property (on for every type since 2.4); a missing one is legal.
        if (q.u8(0) !== Top.SECTION_FOOTER) {
          this.state = S.TOP;
          return true;
        }
        if (!this.has(5)) return false;
        const id = q.u32(1);
        this.emitBytes(q.take(5));
        if (id !== this.currentSection)
          return this.fallback(`footer of section ${id} closes section ${this.currentSection}`);
        this.state = S.TOP;
        return true;
      }
      case S.AFTER_EOF: {
        if (!this.has(1)) return false;
        if (q.u8(0) !== Top.VMDESCRIPTION)
          return this.fallback("data after EOF that is not a VM description");
        if (!this.has(5)) return false;
        const len = q.u32(1);
        this.emitBytes(q.take(5));
        this.pass(len, S.DONE);
        return true;
      }
      case S.DONE: {
        this.modeValue = "done";
        if (!this.has(1)) return false;
        return this.fallback("data after the VM description");
      }
      case S.PASS: {
        if (this.passLeft === 0) {
          this.state = this.passReturn;
          return true;
        }
        const n = Math.min(this.passLeft, q.length);
        if (n === 0) return false;
        this.emitBytes(q.take(n));
        this.passLeft -= n;
        return true;
      }
      case S.OPAQUE: {
        if (q.length === 0) return false;
        this.emitBytes(q.take(q.length));
        return true;
      }
    }
  }

  private configSubsection(): boolean {
    const q = this.q;
    if (!this.has(1)) return false;
    if (q.u8(0) !== Top.SUBSECTION) {
      this.state = S.TOP;
      return true;
    }
    if (!this.has(2)) return false;
    const nameLen = q.u8(1);
    const head = 2 + nameLen + 4;
    if (!this.has(head)) return false;
    const name = q.peek(2, nameLen).toString("latin1");
    if (name === "configuration/target-page-bits") {
      if (!this.has(head + 4)) return false;
      const bits = q.u32(head);
      this.emitBytes(q.take(head + 4));
      if (bits !== TARGET_PAGE_BITS) return this.fallback(`target page bits ${bits}`);
      return true;
    }
    if (name === "configuration/uuid") {
      if (!this.has(head + 16)) return false;
      this.emitBytes(q.take(head + 16));
      return true;
    }
    if (name === "configuration/capabilities") {
      if (!this.has(head + 4)) return false;
      const count = q.u32(head);
      this.emitBytes(q.take(head + 4));
      if (count > MAX_CAPS) return this.fallback(`${count} capabilities in the configuration`);
      this.capsLeft = count;
      this.state = S.CAPS;
      return true;
    }
    return this.fallback(`unknown configuration subsection "${name}"`);
  }

  private topLevel(): boolean {
    const q = this.q;
    if (!this.has(1)) return false;
    const type = q.u8(0);
    switch (type) {
      case Top.SECTION_START:
      case Top.SECTION_FULL: {
        if (!this.has(6)) return false;
        const idLen = q.u8(5);
        if (!this.has(6 + idLen + 8)) return false;
        const id = q.u32(1);
        const name = q.peek(6, idLen).toString("latin1");
        const version = q.u32(6 + idLen + 4);
        this.emitBytes(q.take(6 + idLen + 8));
        if (type === Top.SECTION_FULL) {
          if (this.ramEnded) return this.stopParsing("tail", `device state section "${name}"`);
          return this.fallback(`device state section "${name}" before the end of RAM`);
        }
        if (name !== "ram") return this.fallback(`live section "${name}" is not RAM`);
        if (version !== RAM_SECTION_VERSION) return this.fallback(`RAM section version ${version}`);
        if (this.ramSectionId !== -1) return this.fallback("a second RAM section start");
        this.ramSectionId = id;
        this.enterRam(id);
        return true;
      }
      case Top.SECTION_PART:
      case Top.SECTION_END: {
        if (!this.has(5)) return false;
        const id = q.u32(1);
        this.emitBytes(q.take(5));
        if (id !== this.ramSectionId) return this.fallback(`section ${id} is not the RAM section`);
        if (type === Top.SECTION_END) this.ramEnded = true;
        this.enterRam(id);
        return true;
      }
      case Top.COMMAND:
        return this.command();
      case Top.EOF:
        this.emitBytes(q.take(1));
        this.state = S.AFTER_EOF;
        return true;
      default:
        return this.fallback(`unexpected record type 0x${type.toString(16)}`);
    }
  }

  private enterRam(id: number): void {
    this.currentSection = id;
    this.stats.ramSections++;
    this.state = S.RAM;
  }

  private command(): boolean {
    const q = this.q;
    if (!this.has(5)) return false;
    const cmd = q.u16(1);
    const len = q.u16(3);
    this.stats.commands++;
    const expected = COMMAND_LENGTH.get(cmd);
    if (expected === undefined || (expected !== null && len !== expected)) {
      this.emitBytes(q.take(5));
      // QEMU's loader refuses these too; an unknown command might carry bytes beyond `len`.
      return this.fallback(
        expected === undefined
          ? `unknown command ${cmd}`
          : `command ${cmd} of length ${len}, expected ${expected}`,
      );
    }
    if (cmd === Cmd.PACKAGED) {
      if (!this.has(9)) return false;
      const size = q.u32(5);
      this.emitBytes(q.take(9));
      // The package is a whole nested stream (device state for post-copy): carried verbatim.
      this.pass(size, S.TOP);
      return true;
    }
    if (cmd === Cmd.POSTCOPY_ADVISE && len === 16) {
      if (!this.has(21)) return false;
      // The summary ORs every block's page size: anything but 4 KiB means per-block sizes in MEM_SIZE.
      this.postcopyHugePages = q.u64(5) !== TARGET_PAGE_SIZE;
      this.emitBytes(q.take(21));
      return true;
    }
    this.emitBytes(q.take(5));
    this.pass(len, S.TOP);
    return true;
  }

  private ramRecord(): boolean {
    const q = this.q;
    if (!this.has(8)) return false;
    const hi = q.u32(0);
    const lo = q.u32(4);
    const flags = lo & FLAG_MASK;
    const offset = hi * TWO32 + (lo - flags);
    if (flags === RamFlag.MEM_SIZE) {
      this.emitBytes(q.take(8));
      if (this.postcopyHugePages) return this.fallback("post-copy with huge pages (per-block page sizes)");
      if (offset >= 2 ** 53) return this.fallback("RAM size out of range");
      this.memLeft = offset;
      this.blocks.clear();
      this.lastBlock = null;
      this.state = S.BLOCKS;
      return true;
    }
    if (flags === RamFlag.EOS) {
      this.emitBytes(q.take(8));
      this.state = S.FOOTER;
      return true;
    }
    if (flags === RamFlag.MULTIFD_FLUSH) {
      this.emitBytes(q.take(8));
      // QEMU writes the bare flag; anything in the offset bits is not QEMU's record.
      if (offset !== 0) return this.fallback(`multifd flush with offset ${offset}`);
      this.stats.multifdFlushes++;
      return true;
    }
    const kind = flags & ~RamFlag.CONTINUE;
    if (
      kind !== RamFlag.ZERO &&
      kind !== RamFlag.PAGE &&
      kind !== RamFlag.XBZRLE &&
      kind !== RamFlag.COMPRESS_PAGE
    ) {
      return this.fallback(`RAM record with flags 0x${flags.toString(16)}`);
    }
    let head = 8;
    let block = this.lastBlock;
    if ((flags & RamFlag.CONTINUE) === 0) {
      if (!this.has(9)) return false;
      const len = q.u8(8);
      head = 9 + len;
      if (!this.has(head)) return false;
      const name = q.peek(9, len).toString("latin1");
      block = this.blocks.get(name) ?? null;
      if (!block) return this.fallback(`page of unknown RAM block "${name}"`);
    } else if (!block) {
      return this.fallback("CONTINUE page before any block was named");
    }
    if (offset >= block.length || offset >= MAX_OFFSET)
      return this.fallback(`page offset ${offset} outside block "${block.name}"`);
    switch (kind) {
      case RamFlag.ZERO:
        if (!this.has(head + 1)) return false;
        this.emitBytes(q.take(head + 1));
        this.stats.zeroPages++;
        break;
      case RamFlag.PAGE: {
        if (!this.has(head + TARGET_PAGE_SIZE)) return false;
        this.emitBytes(q.take(head));
        this.flushBytes();
        const data = q.takeOne(TARGET_PAGE_SIZE);
        this.out.push({ kind: "page", block: block.name, blockIndex: block.index, offset, data });
        this.stats.pages++;
        this.stats.pageBytes += TARGET_PAGE_SIZE;
        break;
      }
      case RamFlag.XBZRLE: {
        if (!this.has(head + 3)) return false;
        const encoding = q.u8(head);
        const len = q.u16(head + 1);
        if (encoding !== XBZRLE_ENCODING || len > TARGET_PAGE_SIZE)
          return this.fallback(`XBZRLE record with encoding ${encoding} and length ${len}`);
        if (!this.has(head + 3 + len)) return false;
        this.emitBytes(q.take(head + 3 + len));
        this.stats.xbzrlePages++;
        break;
      }
      default: {
        if (!this.has(head + 4)) return false;
        const len = q.u32(head);
        if (len > MAX_COMPRESSED_PAGE) return this.fallback(`compressed page of ${len} bytes`);
        if (!this.has(head + 4 + len)) return false;
        this.emitBytes(q.take(head + 4 + len));
        this.stats.compressedPages++;
      }
    }
    this.lastBlock = block;
    return true;
  }

  private blockEntry(): boolean {
    const q = this.q;
    if (this.memLeft === 0) {
      this.state = S.RAM;
      return true;
    }
    if (!this.has(1)) return false;
    const len = q.u8(0);
    const size = 1 + len + 8 + (this.ignoreShared ? 8 : 0);
    if (!this.has(size)) return false;
    const name = q.peek(1, len).toString("latin1");
    const length = q.u64(1 + len);
    this.emitBytes(q.take(size));
    if (length === null || length > this.memLeft)
      return this.fallback(`RAM block "${name}" larger than the announced total`);
    if (this.blocks.has(name)) return this.fallback(`RAM block "${name}" announced twice`);
    if (this.blocks.size >= 0xffff) return this.fallback("too many RAM blocks");
    this.blocks.set(name, { name, index: this.blocks.size, length });
    this.memLeft -= length;
    return true;
  }
}

/** The relay's page number for a page: block index in the high bits, page index below. */
export function pageNumber(blockIndex: number, offset: number): number {
  return blockIndex * TWO32 + offset / TARGET_PAGE_SIZE;
}
