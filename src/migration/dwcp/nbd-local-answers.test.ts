/**
 * The source relay's own answers to NBD flushes, driven as the relay drives them: requests
 * through the splitter's hook (which gives each request the relay's cookie), the
 * destination's replies (under those cookies) through fromDestination.
 */
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  chunkReply,
  errorPayload,
  greeting,
  Opt,
  optionReply,
  request,
  simpleReply,
} from "./nbd-frames.test-util.js";
import { NbdLocalAnswers, RELAY_COOKIE_BASE } from "./nbd-local-answers.js";
import { NbdCmd } from "./nbd-replies.js";
import { NbdRequestSplitter } from "./nbd-splitter.js";

const ACK = 1;
/** The cookie the relay gives the n-th request (0-based). */
const relayed = (n: number): bigint => RELAY_COOKIE_BASE + BigInt(n);

function connection(extended: boolean) {
  const answers = new NbdLocalAnswers();
  const splitter = new NbdRequestSplitter((r) => answers.onRequest(r));
  splitter.push(Buffer.from([0, 0, 0, 3]));
  const client: Buffer[] = [];
  const forwarded: Buffer[] = [];
  const fromDst = (b: Buffer) => client.push(...answers.fromDestination(b));
  const send = (b: Buffer) => {
    for (const e of splitter.push(Buffer.from(b))) forwarded.push(e.data);
    client.push(...answers.takeLocal());
  };
  fromDst(greeting());
  if (extended) fromDst(optionReply(Opt.EXTENDED_HEADERS, ACK));
  fromDst(optionReply(Opt.GO, ACK));
  const handshake = Buffer.concat(client).length;
  const received = () => Buffer.concat(client).subarray(handshake);
  return { answers, send, fromDst, received, forwarded: () => Buffer.concat(forwarded) };
}

describe("NbdLocalAnswers", () => {
  it("answers a flush at once with the client's cookie and swallows the real one, checking it", () => {
    const c = connection(false);
    c.send(request(NbdCmd.FLUSH, 5n));
    expect(c.received().equals(simpleReply(5n))).toBe(true);
    // The flush crosses the link under the relay's cookie.
    expect(c.forwarded().equals(request(NbdCmd.FLUSH, relayed(0)))).toBe(true);
    expect(c.answers.stats).toEqual({ answered: 1, confirmed: 0 });
    expect(() => c.answers.confirmAll()).toThrow(/never confirmed 1 flush/);
    c.fromDst(simpleReply(relayed(0)));
    expect(c.received().equals(simpleReply(5n))).toBe(true); // not twice
    expect(c.answers.stats).toEqual({ answered: 1, confirmed: 1 });
    expect(() => c.answers.confirmAll()).not.toThrow();
  });

  it("answers in the extended form once extended headers were negotiated", () => {
    const c = connection(true);
    c.send(request(NbdCmd.FLUSH, 6n, { extended: true, offset: 0 }));
    expect(c.received().equals(chunkReply(6n, { extended: true }))).toBe(true);
    c.fromDst(chunkReply(relayed(0), { extended: true }));
    expect(c.answers.stats.confirmed).toBe(1);
  });

  it("leaves writes and reads to the destination, their replies under the client's cookies", () => {
    const answers = new NbdLocalAnswers();
    const splitter = new NbdRequestSplitter((r) => answers.onRequest(r));
    splitter.push(Buffer.from([0, 0, 0, 3]));
    answers.fromDestination(greeting());
    splitter.push(request(NbdCmd.FLUSH, 1n));
    expect(answers.takeLocal()).toEqual([]); // before NBD_OPT_GO: nothing answered here
    const c = connection(false);
    c.send(request(NbdCmd.WRITE, 2n, { offset: 4096, payload: randomBytes(4096) }));
    c.send(request(NbdCmd.READ, 3n, { length: 512 }));
    expect(c.received().length).toBe(0);
    const data = randomBytes(512);
    c.fromDst(simpleReply(relayed(0)));
    c.fromDst(simpleReply(relayed(1), 0, data));
    expect(c.received().equals(Buffer.concat([simpleReply(2n), simpleReply(3n, 0, data)]))).toBe(true);
  });

  it("keeps a reused cookie unambiguous: the client's next request under it, answered first", () => {
    const c = connection(true);
    c.send(request(NbdCmd.FLUSH, 1n, { extended: true }));
    // QEMU's client reuses the slot's cookie once it has an answer.
    c.send(request(NbdCmd.WRITE, 1n, { extended: true, offset: 8192, payload: randomBytes(4096) }));
    // The export answers the write before the flush.
    c.fromDst(chunkReply(relayed(1), { extended: true, offset: 8192 }));
    c.fromDst(chunkReply(relayed(0), { extended: true }));
    expect(
      c
        .received()
        .equals(
          Buffer.concat([
            chunkReply(1n, { extended: true }),
            chunkReply(1n, { extended: true, offset: 8192 }),
          ]),
        ),
    ).toBe(true);
    expect(c.answers.stats).toEqual({ answered: 1, confirmed: 1 });
  });

  it("inserts its answer only between two of the destination's replies", () => {
    const c = connection(false);
    c.send(request(NbdCmd.READ, 1n, { length: 1000 }));
    const data = randomBytes(1000);
    const read = simpleReply(relayed(0), 0, data);
    c.fromDst(read.subarray(0, 400)); // inside the read's data
    c.send(request(NbdCmd.FLUSH, 2n));
    expect(c.received().equals(simpleReply(1n, 0, data.subarray(0, 384)))).toBe(true);
    c.fromDst(read.subarray(400));
    expect(c.received().equals(Buffer.concat([simpleReply(1n, 0, data), simpleReply(2n)]))).toBe(true);
  });

  it("fails when the destination's real flush fails, its replies cannot be followed, or name no request", () => {
    const c = connection(true);
    c.send(request(NbdCmd.FLUSH, 7n, { extended: true }));
    expect(() =>
      c.fromDst(chunkReply(relayed(0), { extended: true, type: 0x8001, payload: errorPayload(5) })),
    ).toThrow(/failed a flush the relay had answered \(error 5\)/);
    const d = connection(false);
    d.send(request(NbdCmd.FLUSH, 8n));
    expect(() => d.fromDst(Buffer.from("not an NBD reply"))).toThrow(/can no longer be followed/);
    const e = connection(true);
    expect(() => e.fromDst(chunkReply(99n, { extended: true }))).toThrow(/never sent/);
  });
});
