/**
 * Constants of QEMU 7.2's migration stream that the splitter relies on
 * (docs/migration-stream.md lists exactly this subset and where it comes from). Values are
 * QEMU's wire numbers; they are stable across QEMU versions because old streams must load.
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

/** QEMU_VM_COMMAND sub-commands (be16) whose payload the splitter must understand. */
export const Cmd = {
  POSTCOPY_ADVISE: 3,
  PACKAGED: 7,
} as const;

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
  COMPRESS_PAGE: 0x100,
} as const;

/** x86 target page: the flag bits live below it. */
export const TARGET_PAGE_BITS = 12;
export const TARGET_PAGE_SIZE = 1 << TARGET_PAGE_BITS;
export const FLAG_MASK = TARGET_PAGE_SIZE - 1;

/** The only version of the "ram" section QEMU 7.2 writes. */
export const RAM_SECTION_VERSION = 4;
/** ENCODING_FLAG_XBZRLE: the one byte before an XBZRLE record's length. */
export const XBZRLE_ENCODING = 0x01;
/** zlib compressBound(4096): the largest COMPRESS_PAGE payload QEMU's loader accepts. */
export const MAX_COMPRESSED_PAGE = 4110;
/** Bound on the machine type name in the configuration section (QEMU's are ~20 bytes). */
export const MAX_MACHINE_NAME = 256;
