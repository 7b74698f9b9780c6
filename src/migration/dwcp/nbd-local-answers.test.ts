/**
 * The source relay's own answers to NBD flushes, driven as the relay drives them: requests
 * through the splitter's hook, the destination's replies through fromDestination.
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
import { NbdLocalAnswers } from "./nbd-local-answers.js";
import { NbdCmd } from "./nbd-replies.js";
import { NbdRequestSplitter } from "./nbd-splitter.js";

const ACK = 1;

function connection(extended: boolean) {
  const answers = new NbdLocalAnswers();
  const splitter = new NbdRequestSplitter((r) => answers.onRequest(r));
  splitter.push(Buffer.from([0, 0, 0, 3]));
  const client: Buffer[] = [];
  const fromDst = (b: Buffer) => client.push(...answers.fromDestination(b));
  const send = (b: Buffer) => {
    splitter.push(b);
    client.push(...answers.takeLocal());
  };
  fromDst(greeting());
  if (extended) fromDst(optionReply(Opt.EXTENDED_HEADERS, ACK));
  fromDst(optionReply(Opt.GO, ACK));
  const handshake = Buffer.concat(client).length;
  const received = () => Buffer.concat(client).subarray(handshake);
  return { answers, send, fromDst, received };
}

describe("NbdLocalAnswers", () => {
  it("answers a flush at once (simple reply) and swallows the real one, checking it", () => {
    const c = connection(false);
    c.send(request(NbdCmd.FLUSH, 5n));
    expect(c.received().equals(simpleReply(5n))).toBe(true);
    expect(c.answers.stats).toEqual({ answered: 1, confirmed: 0 });
    expect(() => c.answers.confirmAll()).toThrow(/never confirmed 1 flush/);
    c.fromDst(simpleReply(5n));
    expect(c.received().equals(simpleReply(5n))).toBe(true); // not twice
    expect(c.answers.stats).toEqual({ answered: 1, confirmed: 1 });
    expect(() => c.answers.confirmAll()).not.toThrow();
  });

  it("answers in the extended form once extended headers were negotiated", () => {
    const c = connection(true);
    c.send(request(NbdCmd.FLUSH, 6n, { extended: true, offset: 0 }));
    expect(c.received().equals(chunkReply(6n, { extended: true }))).toBe(true);
    c.fromDst(chunkReply(6n, { extended: true }));
    expect(c.answers.stats.confirmed).toBe(1);
  });

  it("leaves writes and reads to the destination, and answers nothing before NBD_OPT_GO", () => {
    const answers = new NbdLocalAnswers();
    const splitter = new NbdRequestSplitter((r) => answers.onRequest(r));
    splitter.push(Buffer.from([0, 0, 0, 3]));
    answers.fromDestination(greeting());
    splitter.push(request(NbdCmd.FLUSH, 1n));
    expect(answers.takeLocal()).toEqual([]);
    const c = connection(false);
    c.send(request(NbdCmd.WRITE, 2n, { offset: 4096, payload: randomBytes(4096) }));
    c.send(request(NbdCmd.READ, 3n, { length: 512 }));
    expect(c.received().length).toBe(0);
    const data = randomBytes(512);
    c.fromDst(simpleReply(2n));
    c.fromDst(simpleReply(3n, 0, data));
    expect(c.received().equals(Buffer.concat([simpleReply(2n), simpleReply(3n, 0, data)]))).toBe(true);
  });

  it("inserts its answer only between two of the destination's replies", () => {
    const c = connection(false);
    c.send(request(NbdCmd.READ, 1n, { length: 1000 }));
    const data = randomBytes(1000);
    const read = simpleReply(1n, 0, data);
    c.fromDst(read.subarray(0, 400)); // inside the read's data
    c.send(request(NbdCmd.FLUSH, 2n));
    expect(c.received().equals(read.subarray(0, 400))).toBe(true);
    c.fromDst(read.subarray(400));
    expect(c.received().equals(Buffer.concat([read, simpleReply(2n)]))).toBe(true);
  });

  it("fails when the destination's real flush fails, or its replies cannot be followed", () => {
    const c = connection(true);
    c.send(request(NbdCmd.FLUSH, 7n, { extended: true }));
    expect(() =>
      c.fromDst(chunkReply(7n, { extended: true, type: 0x8001, payload: errorPayload(5) })),
    ).toThrow(/failed a flush the relay had answered \(error 5\)/);
    const d = connection(false);
    d.send(request(NbdCmd.FLUSH, 8n));
    expect(() => d.fromDst(Buffer.from("not an NBD reply"))).toThrow(/can no longer be followed/);
  });

  it("holds a request that reuses an unconfirmed answer's cookie until the real reply", async () => {
    const c = connection(false);
    c.send(request(NbdCmd.FLUSH, 5n));
    expect(c.answers.held()).toBeNull();
    // QEMU's client reuses the slot's cookie once it has an answer.
    c.send(request(NbdCmd.WRITE, 5n, { offset: 0, payload: randomBytes(4096) }));
    const held = c.answers.held();
    expect(held).not.toBeNull();
    let released = false;
    void held!.then(() => (released = true));
    await new Promise((r) => setImmediate(r));
    expect(released).toBe(false);
    c.fromDst(simpleReply(5n)); // the flush's real reply: swallowed
    await held;
    expect(c.answers.held()).toBeNull();
    expect(c.answers.stats).toEqual({ answered: 1, confirmed: 1 });
    c.fromDst(simpleReply(5n)); // the write's: the client's
    expect(c.received().equals(Buffer.concat([simpleReply(5n), simpleReply(5n)]))).toBe(true);
  });
});
