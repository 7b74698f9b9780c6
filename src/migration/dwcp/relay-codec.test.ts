/** Control-channel encoding of the migration relay: round trips and hostile input. */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  CtlMsg,
  decodeEnd,
  encodeEnd,
  parseItems,
  SegmentBuilder,
  SegmentCompressor,
  SegmentDecoder,
  type SegmentItem,
} from "./relay-codec.js";

type Op = { bytes: Buffer } | { page: Buffer | null };

/** What a segment should decode to: bytes coalesced per item, page runs counted. */
function expected(ops: Op[]): SegmentItem[] {
  const out: SegmentItem[] = [];
  for (const op of ops) {
    if ("bytes" in op) {
      if (op.bytes.length > 0) out.push({ kind: "bytes", data: op.bytes });
      continue;
    }
    if (op.page) out.push({ kind: "bytes", data: op.page });
    const last = out.at(-1);
    if (last?.kind === "pages" && !op.page) last.count++;
    else out.push({ kind: "pages", count: 1 });
  }
  return out;
}

describe("relay segments", () => {
  it("round-trip any mix of verbatim bytes and page markers, compressed or not", () => {
    const op = fc.oneof(
      fc.uint8Array({ maxLength: 300 }).map((b) => ({ bytes: Buffer.from(b) })),
      fc.option(fc.uint8Array({ minLength: 8, maxLength: 8 }), { nil: null }).map((h) => ({
        page: h ? Buffer.from(h) : null,
      })),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), fc.constantFrom(0, 1, 3), (ops, level) => {
        const b = new SegmentBuilder();
        for (const o of ops) {
          if ("bytes" in o) b.bytes(o.bytes);
          else b.page(o.page ?? undefined);
        }
        const { body, pages } = b.take();
        expect(pages).toBe(ops.filter((o) => "page" in o).length);
        const msg = new SegmentCompressor(level).encode(body);
        const items = new SegmentDecoder().decode(msg);
        const flat = (xs: SegmentItem[]) =>
          xs.flatMap((x) => (x.kind === "bytes" ? [x.data.toString("hex")] : Array(x.count).fill("P")));
        expect(flat(items).join("")).toBe(flat(expected(ops)).join(""));
      }),
    );
  });

  it("rejects malformed bodies and messages with NOVA_DWCP_PROTOCOL", () => {
    const bad = [
      Buffer.from([0x00, 0x05, 1, 2]), // bytes item overruns
      Buffer.from([0x00, 0x00]), // empty bytes item
      Buffer.from([0x01, 0x00]), // empty pages item
      Buffer.from([0x02, 1, 2, 3]), // truncated header+page
      Buffer.from([0x09]), // unknown item
      Buffer.from([0x01, 0xff, 0xff, 0xff, 0xff, 0xff]), // varint too long
    ];
    for (const body of bad)
      expect(() => parseItems(body)).toThrow(expect.objectContaining({ code: "NOVA_DWCP_PROTOCOL" }));
    const d = new SegmentDecoder();
    const head = (codec: number, raw: number) => {
      const h = Buffer.alloc(6);
      h[0] = CtlMsg.SEGMENT;
      h[1] = codec;
      h.writeUInt32BE(raw, 2);
      return h;
    };
    expect(() => d.decode(Buffer.concat([head(0, 5), Buffer.alloc(4)]))).toThrow(/length mismatch/);
    expect(() => d.decode(Buffer.concat([head(1, 100), Buffer.from("not zstd")]))).toThrow(/corrupt zstd/);
    expect(() => d.decode(head(0, 64 * 1024 * 1024))).toThrow(/exceeds the limit/);
    expect(() => d.decode(Buffer.concat([head(7, 0)]))).toThrow(/unknown segment codec/);
  });

  it("fuzz: the decoder either decodes or throws a typed error, never anything else", () => {
    const d = new SegmentDecoder();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        try {
          d.decode(Buffer.concat([Buffer.from([CtlMsg.SEGMENT]), Buffer.from(bytes)]));
        } catch (err) {
          expect(err).toMatchObject({ code: "NOVA_DWCP_PROTOCOL" });
        }
      }),
    );
  });

  it("round-trips END", () => {
    const e = { bytes: 123456789, sha256: Buffer.alloc(32, 7), pages: 42, truncated: true };
    expect(decodeEnd(encodeEnd(e))).toEqual(e);
    const bad = encodeEnd(e);
    bad[49] = 3;
    expect(() => decodeEnd(bad)).toThrow(/malformed END/);
  });
});
