/**
 * zstd for HDE batches and opaque chunks (docs/dwcp.md §7.4): compress with the chosen
 * level, fall back to raw when it does not pay, and decompress with a hard output bound
 * so that a hostile frame cannot make us allocate more than the declared size.
 */
import { Compressor } from "zstd-napi";
import binding from "zstd-napi/binding.js";
import { NovaError } from "../../lib/errors.js";

/** Section codecs on the wire. */
export const Codec = { RAW: 0, ZSTD: 1 } as const;

/** Compressed output larger than this fraction of the input is sent raw instead. */
export const RAW_FALLBACK_RATIO = 0.95;

/** Compresses with a settable level and measures its own speed. */
export class BatchCompressor {
  private readonly cctx = new Compressor();
  private levelValue = 0;
  /** Input bytes and nanoseconds spent, per level, for the level policy. */
  readonly speed = new Map<number, { bytes: number; ns: number }>();
  bytesIn = 0;
  bytesOut = 0;

  /** @param level zstd level; 0 disables compression. */
  constructor(level: number) {
    this.setLevel(level);
  }

  /** Current level (0 = off). */
  get level(): number {
    return this.levelValue;
  }

  /** Changes the level for the next calls. */
  setLevel(level: number): void {
    if (level === this.levelValue) return;
    this.levelValue = level;
    if (level !== 0) this.cctx.setParameters({ compressionLevel: level, contentSizeFlag: true });
  }

  /** True when compress() would hand the input back unchanged (off, or too small to try). */
  static skips(level: number, rawLength: number): boolean {
    return level === 0 || rawLength < 64;
  }

  /** Returns [codec, body]: zstd when enabled and worth it, else the input itself. */
  compress(raw: Buffer): [number, Buffer] {
    if (BatchCompressor.skips(this.levelValue, raw.length)) {
      this.record(0, raw.length, raw.length, 0);
      return [Codec.RAW, raw];
    }
    const t0 = process.hrtime.bigint();
    const [codec, body] = pickEncoding(raw, this.cctx.compress(raw));
    this.record(this.levelValue, raw.length, body.length, Number(process.hrtime.bigint() - t0));
    return [codec, body];
  }

  /**
   * Counts a section compressed elsewhere (an HDE worker thread, worker-pool.ts) at
   * `level`, so the level policy's measured speeds and the byte counters stay whole.
   */
  record(level: number, rawLength: number, encodedLength: number, ns: number): void {
    this.bytesIn += rawLength;
    this.bytesOut += encodedLength;
    if (level === 0) return;
    const s = this.speed.get(level) ?? { bytes: 0, ns: 0 };
    s.bytes += rawLength;
    s.ns += ns;
    this.speed.set(level, s);
  }
}

/** The raw-fallback rule (§7.4): zstd output that does not shrink below 95 % is not worth sending. */
export function pickEncoding(raw: Buffer, compressed: Buffer): [number, Buffer] {
  return compressed.length >= raw.length * RAW_FALLBACK_RATIO ? [Codec.RAW, raw] : [Codec.ZSTD, compressed];
}

/**
 * A zstd context per level for code that compresses at a level given per call (an HDE
 * worker thread serves every sender of the process). Same parameters as BatchCompressor,
 * so the output is byte for byte what the sender would have produced inline.
 */
export class LevelCompressors {
  private readonly byLevel = new Map<number, Compressor>();

  compress(level: number, raw: Buffer): Buffer {
    let c = this.byLevel.get(level);
    if (!c) {
      c = new Compressor();
      c.setParameters({ compressionLevel: level, contentSizeFlag: true });
      this.byLevel.set(level, c);
    }
    return c.compress(raw);
  }
}

/** Decompresses `body` that must expand to exactly `rawLength` bytes (<= maxRaw). */
export class BoundedDecompressor {
  private readonly dctx = new binding.DCtx();

  decompress(codec: number, body: Buffer, rawLength: number, maxRaw: number): Buffer {
    if (rawLength > maxRaw) {
      throw new NovaError(
        "NOVA_DWCP_PROTOCOL",
        `Declared size ${rawLength} exceeds the ${maxRaw}-byte limit`,
      );
    }
    if (codec === Codec.RAW) {
      if (body.length !== rawLength) throw new NovaError("NOVA_DWCP_PROTOCOL", "Raw section length mismatch");
      return body;
    }
    if (codec !== Codec.ZSTD) throw new NovaError("NOVA_DWCP_PROTOCOL", `Unknown codec ${codec}`);
    const out = Buffer.allocUnsafe(rawLength);
    let n: number;
    try {
      n = this.dctx.decompress(out, body);
    } catch (err) {
      throw new NovaError("NOVA_DWCP_PROTOCOL", `Corrupt zstd section: ${(err as Error).message}`, {
        cause: err,
      });
    }
    if (n !== rawLength) throw new NovaError("NOVA_DWCP_PROTOCOL", "zstd section shorter than declared");
    return out;
  }
}
