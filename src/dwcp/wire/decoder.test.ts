import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { isNovaError } from "../../lib/errors.js";
import { FrameDecoder } from "./decoder.js";
import {
  encodeFrame,
  FRAME_HEADER_BYTES,
  type Frame,
  FrameType,
  isChannelOrdered,
  isSequenced,
} from "./frame.js";

const frameArb: fc.Arbitrary<Frame> = fc
  .record({
    type: fc.constantFrom(...Object.values(FrameType)),
    more: fc.boolean(),
    channel: fc.integer({ min: 0, max: 0xffff }),
    seq: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
    chseq: fc.integer({ min: 1, max: 0xffffffff }),
    payload: fc.uint8Array({ maxLength: 3000 }),
  })
  .map((r) => ({
    type: r.type,
    flags: r.type === FrameType.DATA && r.more ? 1 : 0,
    channel: r.channel,
    seq: isSequenced(r.type) ? r.seq : 0,
    ...(isChannelOrdered(r.type) ? { chseq: r.chseq } : {}),
    payload: Buffer.from(r.payload),
  }));

function split(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    out.push(buf.subarray(prev, p));
    prev = p;
  }
  out.push(buf.subarray(prev));
  return out;
}

describe("frame decoder", () => {
  it("decodes any sequence of frames however the stream is chunked", () => {
    fc.assert(
      fc.property(
        fc.array(frameArb, { maxLength: 20 }),
        fc.array(fc.nat(), { maxLength: 30 }),
        (frames, cuts) => {
          const stream = Buffer.concat(frames.map(encodeFrame));
          const d = new FrameDecoder({ maxPayload: 4096 });
          const got: Frame[] = [];
          for (const c of split(stream, cuts)) got.push(...d.push(c));
          d.end();
          expect(got.map((f) => ({ ...f, payload: Buffer.from(f.payload) }))).toEqual(frames);
        },
      ),
    );
  });

  it("rejects an oversized frame from its header, before buffering the payload", () => {
    const big = encodeFrame({
      type: FrameType.DATA,
      flags: 0,
      channel: 1,
      seq: 1,
      payload: Buffer.alloc(5000),
    });
    const d = new FrameDecoder({ maxPayload: 4096 });
    expect(() => d.push(big.subarray(0, FRAME_HEADER_BYTES))).toThrow(/exceeds the 4096-byte limit/);
  });

  it("rejects a corrupted payload and stays failed", () => {
    const f = encodeFrame({
      type: FrameType.DATA,
      flags: 0,
      channel: 1,
      seq: 7,
      chseq: 1,
      payload: Buffer.from("hello world"),
    });
    f.writeUInt8(f.readUInt8(FRAME_HEADER_BYTES + 2) ^ 0x40, FRAME_HEADER_BYTES + 2);
    const d = new FrameDecoder();
    expect(() => d.push(f)).toThrow(/payload checksum/);
    expect(() => d.push(Buffer.alloc(0))).toThrow(/payload checksum/);
  });

  it("requires a channel sequence number exactly on the channel-ordered types", () => {
    const data = { type: FrameType.DATA, flags: 0, channel: 1, seq: 3, payload: Buffer.from("x") } as const;
    expect(() => new FrameDecoder().push(encodeFrame(data))).toThrow(/without a channel sequence number/);
    const open = {
      type: FrameType.OPEN,
      flags: 0,
      channel: 1,
      seq: 1,
      chseq: 4,
      payload: Buffer.from("x"),
    } as const;
    expect(() => new FrameDecoder().push(encodeFrame(open))).toThrow(/on a frame that has none/);
    const [got] = new FrameDecoder().push(encodeFrame({ ...data, chseq: 0xfffffffe }));
    expect(got!.chseq).toBe(0xfffffffe);
  });

  it("reports a stream that ends inside a frame", () => {
    const f = encodeFrame({ type: FrameType.PING, flags: 0, channel: 0, seq: 0, payload: Buffer.alloc(8) });
    const d = new FrameDecoder();
    d.push(f.subarray(0, 30));
    expect(() => d.end()).toThrow(/inside a frame/);
  });

  it("ends with a typed error, never a crash, on random and mutated input", () => {
    fc.assert(
      fc.property(
        fc.array(frameArb, { minLength: 1, maxLength: 4 }),
        fc.array(fc.record({ at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }), {
          minLength: 1,
          maxLength: 4,
        }),
        fc.uint8Array({ maxLength: 200 }),
        (frames, flips, junk) => {
          const stream = Buffer.concat([...frames.map(encodeFrame), Buffer.from(junk)]);
          for (const { at, xor } of flips)
            stream.writeUInt8(stream.readUInt8(at % stream.length) ^ xor, at % stream.length);
          const d = new FrameDecoder({ maxPayload: 4096 });
          try {
            d.push(stream);
            d.end();
          } catch (err) {
            expect(isNovaError(err, "NOVA_DWCP_PROTOCOL")).toBe(true);
          }
          expect(d.bufferedBytes).toBeLessThanOrEqual(FRAME_HEADER_BYTES + 4096 + stream.length);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
