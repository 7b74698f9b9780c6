/**
 * The destination relay's gate on its NBD export's answers: DISC held back until every
 * flush the source answered was answered here, failures reported, settled() honest.
 */
import { describe, expect, it } from "vitest";
import {
  chunkReply,
  errorPayload,
  greeting,
  Opt,
  option,
  optionReply,
  request,
} from "./nbd-frames.test-util.js";
import { NbdCmd } from "./nbd-replies.js";
import { NbdReplyGate } from "./nbd-reply-gate.js";

const ACK = 1;

function opened(): NbdReplyGate {
  const g = new NbdReplyGate();
  expect(
    g.clientBytes(Buffer.concat([Buffer.from([0, 0, 0, 3]), option(Opt.EXTENDED_HEADERS), option(Opt.GO)])),
  ).toBe(4 + 16 + 16);
  g.serverBytes(
    Buffer.concat([greeting(), optionReply(Opt.EXTENDED_HEADERS, ACK), optionReply(Opt.GO, ACK)]),
  );
  return g;
}

const settledNow = async (g: NbdReplyGate): Promise<boolean> => {
  let done = false;
  void g.settled().then(
    () => (done = true),
    () => undefined,
  );
  await new Promise((r) => setImmediate(r));
  return done;
};

describe("NbdReplyGate", () => {
  it("holds DISC's last byte back until the export answered the flushes before it", async () => {
    const g = opened();
    const flush = request(NbdCmd.FLUSH, 1n, { extended: true });
    const disc = request(NbdCmd.DISC, 2n, { extended: true });
    const data = Buffer.concat([flush, disc]);
    expect(g.clientBytes(data)).toBe(data.length - 1);
    expect(g.pendingFlushes).toBe(1);
    expect(await settledNow(g)).toBe(false);
    g.serverBytes(chunkReply(1n, { extended: true }));
    expect(g.pendingFlushes).toBe(0);
    expect(await settledNow(g)).toBe(true);
  });

  it("finds DISC split across writes, and lets everything through when nothing is pending", () => {
    const g = opened();
    const disc = request(NbdCmd.DISC, 3n, { extended: true });
    expect(g.clientBytes(disc.subarray(0, 10))).toBe(10);
    expect(g.clientBytes(disc.subarray(10))).toBe(disc.length - 10 - 1);
    const w = request(NbdCmd.WRITE, 4n, { extended: true, payload: Buffer.alloc(4096) });
    expect(opened().clientBytes(w)).toBe(w.length);
  });

  it("does not wait for requests the source does not answer (writes, flushes before NBD_OPT_GO)", async () => {
    const g = opened();
    g.clientBytes(request(NbdCmd.WRITE, 5n, { extended: true, payload: Buffer.alloc(4096) }));
    expect(await settledNow(g)).toBe(true);
    const early = new NbdReplyGate();
    early.clientBytes(Buffer.from([0, 0, 0, 3]));
    early.serverBytes(greeting());
    early.clientBytes(request(NbdCmd.FLUSH, 6n));
    expect(await settledNow(early)).toBe(true);
  });

  it("fails on an error answer and on abort", async () => {
    const g = opened();
    g.clientBytes(request(NbdCmd.FLUSH, 7n, { extended: true }));
    const waiting = g.settled();
    expect(() =>
      g.serverBytes(chunkReply(7n, { extended: true, type: 0x8001, payload: errorPayload(5) })),
    ).toThrow(/failed a flush the source had answered \(request 7, error 5\)/);
    await expect(waiting).rejects.toThrow(/error 5/);
    // An error to a request the source did not answer is the source QEMU's to handle.
    const w2 = opened();
    w2.clientBytes(request(NbdCmd.WRITE_ZEROES, 9n, { extended: true, length: 4096 }));
    expect(() =>
      w2.serverBytes(chunkReply(9n, { extended: true, type: 0x8001, payload: errorPayload(95) })),
    ).not.toThrow();
    expect(await settledNow(w2)).toBe(true);
    const h = opened();
    h.clientBytes(request(NbdCmd.FLUSH, 8n, { extended: true }));
    const w = h.settled();
    h.abort(new Error("relay gone"));
    await expect(w).rejects.toThrow("relay gone");
  });
});
