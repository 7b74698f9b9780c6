/**
 * Constants of QEMU's migration stream that the splitter relies on, as QEMU 7.2 and 10.0
 * write it (docs/migration-stream.md lists exactly this subset, where it comes from and
 * how the two versions differ). Values are QEMU's wire numbers; they are stable across
 * QEMU versions because old streams must load.
 */

/** "QEVM", then the stream version. */
export const FILE_MAGIC = 0x5145564d;
export const FILE_VERSION = 3;

/** Top-level record types (one byte). */
export const Top = {
  EOF: 0x00,
  SECTION_START: 0x01,
  SECTION_PART: 0x02,
  SECTION_END: 0x03,
  SECTION_FULL: 0x04,
  SUBSECTION: 0x05,
  VMDESCRIPTION: 0x06,
  CONFIGURATION: 0x07,
  COMMAND: 0x08,
  SECTION_FOOTER: 0x7e,
} as const;

/** QEMU_VM_COMMAND sub-commands (be16). */
export const Cmd = {
  OPEN_RETURN_PATH: 1,
  PING: 2,
  POSTCOPY_ADVISE: 3,
  POSTCOPY_LISTEN: 4,
  POSTCOPY_RUN: 5,
  POSTCOPY_RAM_DISCARD: 6,
  PACKAGED: 7,
  ENABLE_COLO: 8,
  POSTCOPY_RESUME: 9,
  RECV_BITMAP: 10,
  /** QEMU 10.0 with a ≥ 10.0 machine type: once at switch-over, before the final END sections. */
  SWITCHOVER_START: 11,
} as const;

/**
 * The payload length each known command must have (null: variable), as QEMU's loader
 * checks it. Every command's payload lies inside its length except PACKAGED's, whose
 * nested stream follows the command. A number missing here is a command this splitter
 * does not know: it cannot tell whether more than `len` bytes belong to it.
 */
export const COMMAND_LENGTH: ReadonlyMap<number, number | null> = new Map([
  [Cmd.OPEN_RETURN_PATH, 0],
  [Cmd.PING, 4],
  [Cmd.POSTCOPY_ADVISE, null],
  [Cmd.POSTCOPY_LISTEN, 0],
  [Cmd.POSTCOPY_RUN, 0],
  [Cmd.POSTCOPY_RAM_DISCARD, null],
  [Cmd.PACKAGED, 4],
  [Cmd.ENABLE_COLO, 0],
  [Cmd.POSTCOPY_RESUME, 0],
  [Cmd.RECV_BITMAP, null],
  [Cmd.SWITCHOVER_START, 0],
]);

/** Flags in the low bits of a RAM record's be64 header (the high bits are the page offset). */
export const RamFlag = {
  FULL: 0x01,
  ZERO: 0x02,
  MEM_SIZE: 0x04,
  PAGE: 0x08,
  EOS: 0x10,
  CONTINUE: 0x20,
  XBZRLE: 0x40,
  HOOK: 0x80,
  /** Written by 7.2 with the compress capability; QEMU ≥ 9.1 neither sends nor loads it. */
  COMPRESS_PAGE: 0x100,
  /** QEMU ≥ 8.0, multifd only: the main channel's "sync the multifd channels" mark, a bare header. */
  MULTIFD_FLUSH: 0x200,
} as const;

/** x86 target page: the flag bits live below it. */
export const TARGET_PAGE_BITS = 12;
export const TARGET_PAGE_SIZE = 1 << TARGET_PAGE_BITS;
export const FLAG_MASK = TARGET_PAGE_SIZE - 1;

/** The only version of the "ram" section QEMU 7.2 and 10.0 write. */
export const RAM_SECTION_VERSION = 4;
/** ENCODING_FLAG_XBZRLE: the one byte before an XBZRLE record's length. */
export const XBZRLE_ENCODING = 0x01;
/** zlib compressBound(4096): the largest COMPRESS_PAGE payload QEMU's loader accepts. */
export const MAX_COMPRESSED_PAGE = 4110;
/** Bound on the machine type name in the configuration section (QEMU's are ~20 bytes). */
export const MAX_MACHINE_NAME = 256;

/**
 * Capabilities the configuration section may list (QEMU lists only those that change the
 * stream's format, so both ends must agree). x-ignore-shared adds a field per RAM block;
 * mapped-ram (QEMU ≥ 9.0, file migration only) puts pages at file offsets instead of in
 * records, which this splitter does not follow.
 */
export const CAP_IGNORE_SHARED = "x-ignore-shared";
export const CAP_MAPPED_RAM = "mapped-ram";
