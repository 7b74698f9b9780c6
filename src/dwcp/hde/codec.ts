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

  /** Returns [codec, body]: zstd when enabled and worth it, else the input itself. */
  compress(raw: Buffer): [number, Buffer] {
    this.bytesIn += raw.length;
    if (this.levelValue === 0 || raw.length < 64) {
      this.bytesOut += raw.length;
      return [Codec.RAW, raw];
    }
    const t0 = process.hrtime.bigint();
    const out = this.cctx.compress(raw);
    const s = this.speed.get(this.levelValue) ?? { bytes: 0, ns: 0 };
    s.bytes += raw.length;
    s.ns += Number(process.hrtime.bigint() - t0);
    this.speed.set(this.levelValue, s);
    if (out.length >= raw.length * RAW_FALLBACK_RATIO) {
      this.bytesOut += raw.length;
      return [Codec.RAW, raw];
    }
    this.bytesOut += out.length;
    return [Codec.ZSTD, out];
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
