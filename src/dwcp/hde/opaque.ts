/**
 * Opaque byte streams over HDE (docs/dwcp.md §7.7): no page structure, so only the last
 * level applies: adaptive zstd per chunk, switched off for a while after chunks that did
 * not compress, and probed again later. The channel digest covers integrity.
 *
 *   message = u8 kind = 8 | u8 codec | u32 raw length | body
 */
import { NovaError } from "../../lib/errors.js";
import type { Channel } from "../amst/channel.js";
import { Msg } from "./batch.js";
import { BatchCompressor, BoundedDecompressor, Codec } from "./codec.js";
import type { Pacer } from "./page-sender.js";

/** Sends an opaque stream in chunks with adaptive compression. */
export class OpaqueSender {
  private readonly zstd: BatchCompressor;
  private skip = 0;
  private misses = 0;
  bytesIn = 0;
  bytesOut = 0;

  /** @param level zstd level (0 = never compress). */
  constructor(
    private readonly channel: Channel,
    private readonly level: number,
    private readonly chunkBytes = 1024 * 1024,
    /** Shares the link with other transfers; waited on before each chunk. */
    private readonly pacer?: Pacer,
  ) {
    this.zstd = new BatchCompressor(level);
  }

  /** Sends bytes (any length); resolves under channel backpressure. */
  async write(data: Buffer): Promise<void> {
    for (let off = 0; off < data.length; off += this.chunkBytes)
      await this.sendChunk(data.subarray(off, off + this.chunkBytes));
  }

  private async sendChunk(raw: Buffer): Promise<void> {
    this.bytesIn += raw.length;
    let codec: number = Codec.RAW;
    let body = raw;
    if (this.level > 0 && this.skip === 0) {
      [codec, body] = this.zstd.compress(raw);
      // After 3 incompressible chunks in a row, stop trying for 16 chunks, then probe again.
      this.misses = codec === Codec.RAW ? this.misses + 1 : 0;
      if (this.misses >= 3) {
        this.skip = 16;
        this.misses = 0;
      }
    } else if (this.skip > 0) {
      this.skip--;
    }
    const head = Buffer.allocUnsafe(6);
    head.writeUInt8(Msg.OPAQUE, 0);
    head.writeUInt8(codec, 1);
    head.writeUInt32BE(raw.length, 2);
    this.bytesOut += head.length + body.length;
    await this.pacer?.acquire(head.length + body.length);
    await this.channel.send(Buffer.concat([head, body]));
  }

  /** Ends the stream and waits for the receiver's digest confirmation. */
  async end(): Promise<void> {
    await this.channel.end();
  }
}

/** Yields the decoded chunks of an opaque stream; ends when the sender's digest verified. */
export async function* readOpaque(channel: Channel, maxChunk = 16 * 1024 * 1024): AsyncGenerator<Buffer> {
  const dec = new BoundedDecompressor();
  for await (const m of channel) {
    if (m.length < 6 || m[0] !== Msg.OPAQUE)
      throw new NovaError("NOVA_DWCP_PROTOCOL", "Malformed opaque chunk");
    yield dec.decompress(m.readUInt8(1), m.subarray(6), m.readUInt32BE(2), maxChunk);
  }
}
