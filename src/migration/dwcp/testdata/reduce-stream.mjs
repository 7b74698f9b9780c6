#!/usr/bin/env node
/**
 * Reduces a recorded QEMU migration stream (`migrate exec:cat > s.bin`) to a fixture small
 * enough for git while keeping it a structurally valid stream for the splitter
 * (testdata/README.md): header, configuration, the whole "ram" START section, every
 * top-level command, the first PART section cut to its first PAGES page and ZEROS zero
 * records, the END section cut to its EOS, and everything from the first device-state
 * section to the end, all verbatim. Other PART sections are dropped. Records are cut only
 * at record boundaries and never rewritten, so the kept page records still name or
 * continue the block exactly as QEMU wrote them.
 *
 *   node reduce-stream.mjs IN OUT [PAGES=10] [ZEROS=30]
 *
 * Independent of the parser on purpose: a fixture made by the code under test would
 * share its mistakes.
 */
import { readFileSync, writeFileSync } from "node:fs";

const [input, output, pagesArg = "10", zerosArg = "30"] = process.argv.slice(2);
if (!input || !output) {
  console.error("usage: reduce-stream.mjs IN OUT [PAGES] [ZEROS]");
  process.exit(64);
}
const wantPages = Number(pagesArg);
const wantZeros = Number(zerosArg);
const d = readFileSync(input);
let p = 0;
const out = [];
const keep = (from, to) => out.push(d.subarray(from, to));
const fail = (why) => {
  throw new Error(`${why} at offset ${p}`);
};

const u8 = () => d[p++];
const u32 = () => {
  const v = d.readUInt32BE(p);
  p += 4;
  return v;
};
const str = (n) => {
  const v = d.toString("latin1", p, p + n);
  p += n;
  return v;
};

if (u32() !== 0x5145564d || u32() !== 3) fail("not a version 3 QEMU stream");
let ignoreShared = false;
if (d[p] === 0x07) {
  p++;
  str(u32());
  while (d[p] === 0x05) {
    p++;
    const name = str(u8());
    u32();
    if (name === "configuration/capabilities") {
      for (let n = u32(); n > 0; n--) if (str(u8()) === "x-ignore-shared") ignoreShared = true;
    } else if (name === "configuration/target-page-bits") u32();
    else if (name === "configuration/uuid") p += 16;
    else fail(`configuration subsection ${name}`);
  }
}
keep(0, p);

/** Walks one RAM section body from `p` to past its EOS; `pick(kind, start)` decides what stays. */
function ramBody(pick) {
  for (;;) {
    const start = p;
    const hi = u32();
    const lo = u32();
    const flags = lo & 0xfff;
    if (flags === 0x10) return start;
    if (flags === 0x04) {
      let total = hi * 2 ** 32 + (lo - flags);
      while (total > 0) {
        str(u8());
        total -= Number(d.readBigUInt64BE(p));
        p += 8 + (ignoreShared ? 8 : 0);
      }
      pick("memsize", start);
      continue;
    }
    if (flags === 0x200) {
      pick("other", start);
      continue;
    }
    if ((flags & 0x20) === 0) str(u8());
    const kind = flags & ~0x20;
    if (kind === 0x02) p += 1;
    else if (kind === 0x08) p += 4096;
    else fail(`RAM record flags 0x${flags.toString(16)}`);
    pick(kind === 0x08 ? "page" : "zero", start);
  }
}

/** Skips the section footer if there is one, keeping it. */
function footer() {
  if (d[p] === 0x7e) {
    keep(p, p + 5);
    p += 5;
  }
}

let parts = 0;
for (;;) {
  const start = p;
  const type = u8();
  if (type === 0x08) {
    u32();
    p += d.readUInt16BE(p - 2);
    keep(start, p);
    continue;
  }
  if (type === 0x04) {
    keep(start, d.length);
    break;
  }
  if (type === 0x01) {
    u32();
    if (str(u8()) !== "ram") fail("live section other than ram");
    p += 8;
    ramBody(() => undefined);
    keep(start, p);
    footer();
    continue;
  }
  if (type !== 0x02 && type !== 0x03) fail(`top-level record 0x${type.toString(16)}`);
  u32();
  const first = type === 0x02 && parts++ === 0;
  keep(start, p);
  let pages = 0;
  let zeros = 0;
  const eos = ramBody((kind, from) => {
    if (!first) return;
    if (from === start + 5 && kind !== "page" && kind !== "zero") fail("first record is not a page");
    if (kind === "page" && pages < wantPages) pages++;
    else if (kind === "zero" && zeros < wantZeros) zeros++;
    else return;
    if (from !== start + 5 && (d[from + 7] & 0x20) === 0) fail("a kept record names another block");
    keep(from, p);
  });
  if (type === 0x02 && !first) {
    // A dropped PART section: take back its header and skip its footer.
    out.pop();
    if (d[p] === 0x7e) p += 5;
    continue;
  }
  keep(eos, p);
  footer();
}

const result = Buffer.concat(out);
writeFileSync(output, result);
console.log(`${input}: ${d.length} bytes -> ${output}: ${result.length} bytes`);
