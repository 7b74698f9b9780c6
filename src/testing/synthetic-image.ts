/**
 * A deterministic synthetic VM memory image for DWCP tests and benchmarks: runs of zero,
 * text-like and random pages (about 30 / 40 / 30 %), any page computable on demand so a
 * 1 GiB image never has to sit in RAM. A second version changes a fraction of the pages
 * the way a running guest does: a small region of each changed page is rewritten.
 *
 * Dev-only test tooling (src/testing/): only tests, benches, src/demo and *.test.ts may
 * import it; the shipped library never does.
 */
import { createCipheriv } from "node:crypto";
import { PAGE_SIZE } from "../dwcp/hde/page.js";

/** Image parameters. */
export interface SyntheticImageOptions {
  /** Number of 4 KiB pages. */
  pages: number;
  /** Seed for layout and contents. @defaultValue 1 */
  seed?: number;
  /** Fraction of pages changed relative to version 1. @defaultValue 0 */
  changedFraction?: number;
  /** Seed choosing which pages change. @defaultValue 2 */
  changeSeed?: number;
  /** Fractions of zero and random pages; the rest is text. @defaultValue [0.3, 0.3] */
  mix?: [zero: number, random: number];
}

/** 32-bit integer mixing (MurmurHash3 finaliser): a cheap deterministic hash. */
export function mix32(a: number, b = 0): number {
  let h = (a ^ Math.imul(b + 0x9e3779b9, 0x85ebca6b)) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

const Kind = { ZERO: 0, TEXT: 1, RANDOM: 2 } as const;

let corpusCache: Buffer | null = null;

/** ~4 MiB of deterministic log-and-source-like text (zstd level 3 ratio ~0.3). */
function corpus(): Buffer {
  if (corpusCache) return corpusCache;
  const syll = [
    "ka",
    "ne",
    "ro",
    "ti",
    "mu",
    "sa",
    "le",
    "do",
    "vi",
    "pe",
    "go",
    "ra",
    "in",
    "ex",
    "st",
    "th",
    "qu",
    "or",
    "al",
    "en",
  ];
  const words: string[] = [];
  let s = 12345;
  const rnd = (): number => {
    s = mix32(s, 77);
    return s / 4294967296;
  };
  for (let i = 0; i < 3000; i++) {
    let w = "";
    const n = 1 + Math.floor(rnd() * 4);
    for (let j = 0; j < n; j++) w += syll[Math.floor(rnd() * syll.length)];
    words.push(w);
  }
  // Written straight into one buffer: building it from strings would peak at ~10x the
  // size in V8 heap and inflate every benchmark process's max RSS.
  const size = 4 * 1024 * 1024;
  const out = Buffer.allocUnsafe(size + 512);
  const wordBufs = words.map((w) => Buffer.from(w, "latin1"));
  let len = 0;
  while (len < size) {
    // Zipf-like word choice, numbers, and line structure like logs and source code.
    const n = 4 + Math.floor(rnd() * 12);
    const sep = rnd() < 0.3 ? 0x5f : 0x20;
    for (let i = 0; i < n; i++) {
      if (i > 0) out[len++] = sep;
      if (rnd() < 0.12) len += out.write(String(Math.floor(rnd() * 100000)), len, "latin1");
      else len += wordBufs[Math.floor(words.length * rnd() ** 3)]!.copy(out, len);
    }
    if (rnd() < 0.2) out[len++] = 0x3b;
    out[len++] = 0x0a;
  }
  corpusCache = out.subarray(0, size);
  return corpusCache;
}
/** A deterministic page-structured image. */
export class SyntheticImage {
  readonly pageCount: number;
  private readonly kinds: Uint8Array;
  private readonly seed: number;
  private readonly changed: number;
  private readonly changeSeed: number;
  private readonly key: Buffer;

  constructor(options: SyntheticImageOptions) {
    this.pageCount = options.pages;
    this.seed = options.seed ?? 1;
    this.changed = options.changedFraction ?? 0;
    this.changeSeed = options.changeSeed ?? 2;
    const [zeroF, randF] = options.mix ?? [0.3, 0.3];
    this.kinds = new Uint8Array(this.pageCount);
    let h = mix32(this.seed, 1);
    for (let p = 0; p < this.pageCount; ) {
      h = mix32(h, p);
      const r = h / 4294967296;
      const kind = r < zeroF ? Kind.ZERO : r < zeroF + randF ? Kind.RANDOM : Kind.TEXT;
      h = mix32(h, 99);
      const run = 1 + (h % 64);
      this.kinds.fill(kind, p, Math.min(this.pageCount, p + run));
      p += run;
    }
    this.key = Buffer.alloc(16);
    this.key.writeUInt32BE(this.seed, 0);
    corpus();
  }

  /** Total bytes. */
  get bytes(): number {
    return this.pageCount * PAGE_SIZE;
  }

  /** True when page n differs from version 1. */
  isChanged(n: number): boolean {
    return this.changed > 0 && mix32(n, this.changeSeed) / 4294967296 < this.changed;
  }

  /** Page n's content (a fresh buffer, or `out` when given). */
  page(n: number, out: Buffer = Buffer.allocUnsafe(PAGE_SIZE)): Buffer {
    const kind = this.kinds[n];
    if (kind === Kind.ZERO) out.fill(0);
    else if (kind === Kind.TEXT) {
      const c = corpus();
      const off = mix32(n, this.seed) % (c.length - PAGE_SIZE);
      c.copy(out, 0, off, off + PAGE_SIZE);
    } else {
      const iv = Buffer.alloc(16);
      iv.writeUInt32BE(n >>> 0, 0);
      iv.writeUInt32BE(Math.floor(n / 4294967296), 4);
      const c = createCipheriv("aes-128-ctr", this.key, iv);
      c.update(out.fill(0)).copy(out);
    }
    if (this.isChanged(n)) {
      // A running guest dirties a few cache lines of a page, not the whole page.
      const h = mix32(n, this.changeSeed + 1);
      const len = 16 + (h % 240);
      const at = mix32(h, 3) % (PAGE_SIZE - len);
      for (let i = 0; i < len; i++) out[at + i] = mix32(h, i) & 0xff;
    }
    return out;
  }

  /** Fills `out` (a multiple of PAGE_SIZE) with pages starting at `first`. */
  read(first: number, out: Buffer): Buffer {
    for (let i = 0; i * PAGE_SIZE < out.length; i++)
      this.page(first + i, out.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE));
    return out;
  }
}
