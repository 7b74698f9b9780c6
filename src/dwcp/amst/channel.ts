/**
 * A logical channel inside a DWCP session (docs/dwcp.md §5): an ordered, reliable,
 * message-preserving pipe in each direction, with an end-to-end digest per direction.
 * Owns splitting messages into DATA frames, reassembly, the bounded read queue and the
 * END / END_OK digest exchange, and the channel's own credit. The session owns
 * sequencing, session credit and connections.
 *
 * Channel credit: besides the session window, each channel may have at most
 * `channelWindow` wire bytes of DATA sent but not yet consumed by the peer's application
 * (three quarters of the session window). A channel whose reader stalls thus leaves a
 * quarter of the session's credit to the others, which keep flowing. The receiver reports what its
 * application consumed in CREDIT frames (a running total per channel).
 *
 * Digest: HMAC-SHA256, keyed with the session's digest key for this direction (derived in
 * the handshake, never sent), over the channel number (u16 BE) and then, for each
 * message, its length as u32 BE followed by its bytes. A frame injected on the way cannot
 * be hidden by forging the digest without the key. END carries u64 total bytes, u64
 * message count and the 32-byte digest. The receiver
 * compares before it ends its read side and before it answers END_OK; only END_OK makes
 * the sender's `end()` resolve. A mismatch aborts the channel with NOVA_DWCP_INTEGRITY.
 */
import { createHmac, type Hmac } from "node:crypto";
import { NovaError } from "../../lib/errors.js";
import { type Frame, FrameFlag, FrameType, wireSize } from "../wire/frame.js";

/** What a channel needs from its session. */
export interface ChannelHost {
  /** Largest DATA payload the peer accepts. */
  readonly peerMaxPayload: number;
  /** Largest message this side reassembles. */
  readonly maxMessageBytes: number;
  /** Resolves when `size` bytes of credit are free; rejects when the session failed. */
  waitRoom(size: number, channel: number): Promise<void>;
  /** Queues a sequenced frame (the session assigns the sequence number). */
  enqueue(frame: Omit<Frame, "seq">): void;
  /** The application took `wireBytes` of received frames: return the credit to the peer. */
  consumed(wireBytes: number): void;
  /** Channel credit the peer grants each channel (wire bytes of DATA not yet consumed). */
  readonly peerChannelWindow: number;
  /** Channel credit this side grants; a peer that sends beyond it breaks the protocol. */
  readonly channelWindow: number;
  /** A channel starts (+1) or stops (-1) waiting for channel credit; feeds SessionStats. */
  creditWaiting(delta: 1 | -1): void;
  /** The peer broke the protocol on this channel: end the session. */
  protocolViolation(err: NovaError): void;
  /** Both directions are finished; the session can forget the channel. */
  finished(id: number): void;
  /** Keys the digest of what this side sends (§5). */
  readonly sendDigestKey: Buffer;
  /** Keys the digest of what the peer sends. */
  readonly recvDigestKey: Buffer;
}

function channelMac(key: Buffer, channel: number): Hmac {
  const id = Buffer.allocUnsafe(2);
  id.writeUInt16BE(channel, 0);
  return createHmac("sha256", key).update(id);
}

interface Queued {
  message: Buffer;
  wire: number;
}

const DIGEST_BYTES = 48;

function lengthPrefix(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n, 0);
  return b;
}

/** One logical channel. Send with `send`/`end`, receive with `read` or `for await`. */
export class Channel implements AsyncIterable<Buffer> {
  private readonly sendHash: Hmac;
  private sentBytes = 0;
  private sentMessages = 0;
  private sendChain: Promise<void> = Promise.resolve();
  private sendEnded = false;
  private endWaiter: { resolve: () => void; reject: (e: Error) => void } | null = null;
  private sendDone = false;
  /** Wire bytes of DATA sent, and the peer application's consumed total from CREDIT. */
  private sentWire = 0;
  private peerConsumedWire = 0;
  private creditWaiter: { size: number; resolve: () => void; reject: (e: Error) => void } | null = null;
  /** Wire bytes of DATA received, consumed by our application, and reported to the peer. */
  private recvWire = 0;
  private consumedWire = 0;
  private advertisedWire = 0;

  private readonly recvHash: Hmac;
  private recvBytes = 0;
  private recvMessages = 0;
  private parts: Buffer[] = [];
  private partsBytes = 0;
  private partsWire = 0;
  private readonly queue: Queued[] = [];
  private reader: { resolve: (m: Buffer | null) => void; reject: (e: Error) => void } | null = null;
  private recvEnded = false;
  private failure: Error | null = null;

  constructor(
    /** Channel number (odd: opened by the dialer, even: by the listener). */
    readonly id: number,
    /** Label given when the channel was opened, e.g. "mem" or "ctl". */
    readonly label: string,
    private readonly host: ChannelHost,
  ) {
    this.sendHash = channelMac(host.sendDigestKey, id);
    this.recvHash = channelMac(host.recvDigestKey, id);
  }

  /** The error that ended this channel, if any. */
  get error(): Error | null {
    return this.failure;
  }

  /**
   * Sends one message. Resolves once all its frames are queued within the peer's credit;
   * that wait is the end-to-end backpressure. Calls are serialised in call order.
   */
  send(message: Buffer): Promise<void> {
    if (this.sendEnded || this.failure) {
      return Promise.reject(
        this.failure ?? new NovaError("NOVA_DWCP_CLOSED", `Channel "${this.label}" was already ended`),
      );
    }
    // A message is consumed only once whole, so it must fit the channel's credit with
    // room for its frame headers, or its sender would wait for credit forever.
    const limit = Math.min(this.host.maxMessageBytes, this.host.peerChannelWindow - 64 * 1024);
    if (message.length > limit) {
      return Promise.reject(
        new NovaError(
          "NOVA_BAD_REQUEST",
          `Message of ${message.length} bytes exceeds the ${limit}-byte limit`,
        ),
      );
    }
    const run = this.sendChain.then(() => this.sendNow(message));
    this.sendChain = run.catch(() => undefined);
    return run;
  }

  private async sendNow(message: Buffer): Promise<void> {
    if (this.failure) throw this.failure;
    const max = this.host.peerMaxPayload;
    let off = 0;
    do {
      const part = message.subarray(off, Math.min(message.length, off + max));
      off += part.length;
      const frame = {
        type: FrameType.DATA,
        flags: off < message.length ? FrameFlag.MORE : 0,
        channel: this.id,
        payload: part,
      };
      const size = wireSize({ ...frame, seq: 0 });
      await this.waitCredit(size);
      await this.host.waitRoom(size, this.id);
      if (this.failure) throw this.failure;
      this.sentWire += size;
      this.host.enqueue(frame);
    } while (off < message.length);
    this.sendHash.update(lengthPrefix(message.length));
    this.sendHash.update(message);
    this.sentBytes += message.length;
    this.sentMessages += 1;
  }

  private waitCredit(size: number): Promise<void> {
    if (this.sentWire - this.peerConsumedWire + size <= this.host.peerChannelWindow) return Promise.resolve();
    this.host.creditWaiting(1);
    return new Promise((resolve, reject) => {
      this.creditWaiter = {
        size,
        resolve: () => {
          this.host.creditWaiting(-1);
          resolve();
        },
        reject: (e) => {
          this.host.creditWaiting(-1);
          reject(e);
        },
      };
    });
  }

  /** @internal The peer's application consumed this channel's DATA up to `total` wire bytes. */
  onCredit(total: number): void {
    if (total <= this.peerConsumedWire) return;
    if (total > this.sentWire) {
      this.violation("CREDIT for more than was sent");
      return;
    }
    this.peerConsumedWire = total;
    const w = this.creditWaiter;
    if (w && this.sentWire - this.peerConsumedWire + w.size <= this.host.peerChannelWindow) {
      this.creditWaiter = null;
      w.resolve();
    }
  }

  /** @internal True when consumed bytes wait to be reported to the peer. */
  get creditPending(): boolean {
    return this.consumedWire !== this.advertisedWire;
  }

  /** @internal Consumed wire bytes not yet reported to the peer; marks them reported. */
  takeCredit(): number | null {
    if (this.consumedWire === this.advertisedWire) return null;
    this.advertisedWire = this.consumedWire;
    return this.consumedWire;
  }

  /** The application took a received message (or it was discarded): return its credit. */
  private release(wire: number): void {
    this.consumedWire += wire;
    this.host.consumed(wire);
  }

  /**
   * Ends this side's direction: sends the digest and resolves when the peer confirms it
   * received every byte intact (END_OK). Rejects with NOVA_DWCP_INTEGRITY on a mismatch.
   */
  end(): Promise<void> {
    if (this.sendEnded)
      return Promise.reject(new NovaError("NOVA_DWCP_CLOSED", `Channel "${this.label}" was already ended`));
    this.sendEnded = true;
    const done = new Promise<void>((resolve, reject) => {
      this.endWaiter = { resolve, reject };
    });
    this.sendChain = this.sendChain.then(() => {
      if (this.failure) throw this.failure;
      const payload = Buffer.alloc(DIGEST_BYTES);
      payload.writeBigUInt64BE(BigInt(this.sentBytes), 0);
      payload.writeBigUInt64BE(BigInt(this.sentMessages), 8);
      this.sendHash.digest().copy(payload, 16);
      this.host.enqueue({ type: FrameType.END, flags: 0, channel: this.id, payload });
    });
    this.sendChain.catch((err: Error) => this.fail(err));
    return done;
  }

  /** Aborts the channel in both directions and tells the peer why. */
  abort(reason: string): void {
    if (this.failure) return;
    this.host.enqueue({
      type: FrameType.ABORT,
      flags: 0,
      channel: this.id,
      payload: Buffer.from(reason.slice(0, 1000)),
    });
    this.fail(new NovaError("NOVA_DWCP_CLOSED", `Channel "${this.label}" aborted locally: ${reason}`));
  }

  /** Next message, or null once the peer ended its direction with a verified digest. */
  read(): Promise<Buffer | null> {
    const q = this.queue.shift();
    if (q) {
      this.release(q.wire);
      return Promise.resolve(q.message);
    }
    if (this.failure) return Promise.reject(this.failure);
    if (this.recvEnded) return Promise.resolve(null);
    if (this.reader) return Promise.reject(new Error("Channel.read called concurrently"));
    return new Promise((resolve, reject) => {
      this.reader = { resolve, reject };
    });
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Buffer> {
    for (;;) {
      const m = await this.read();
      if (m === null) return;
      yield m;
    }
  }

  /** @internal A DATA frame for this channel arrived in order. */
  onData(frame: Frame): void {
    const wire = wireSize(frame);
    this.recvWire += wire;
    if (this.recvEnded || this.failure) {
      // Data after an abort is discarded; data after END is a violation.
      this.release(wire);
      if (this.recvEnded && !this.failure) this.violation("DATA after END");
      return;
    }
    if (this.recvWire - this.consumedWire > this.host.channelWindow) {
      this.release(wire);
      this.violation(`more than the channel window of ${this.host.channelWindow} bytes unconsumed`);
      return;
    }
    this.parts.push(frame.payload);
    this.partsBytes += frame.payload.length;
    this.partsWire += wire;
    if (this.partsBytes > this.host.maxMessageBytes) {
      this.violation(`message larger than ${this.host.maxMessageBytes} bytes`);
      return;
    }
    if (frame.flags & FrameFlag.MORE) return;
    const message = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.partsBytes);
    const entry = { message, wire: this.partsWire };
    this.parts = [];
    this.partsBytes = 0;
    this.partsWire = 0;
    this.recvHash.update(lengthPrefix(message.length));
    this.recvHash.update(message);
    this.recvBytes += message.length;
    this.recvMessages += 1;
    if (this.reader) {
      const r = this.reader;
      this.reader = null;
      this.release(entry.wire);
      r.resolve(entry.message);
    } else {
      this.queue.push(entry);
    }
  }

  /** @internal The peer ended its direction; verify the digest. */
  onEnd(payload: Buffer): void {
    if (this.recvEnded || this.failure) return;
    if (payload.length !== DIGEST_BYTES || this.partsBytes > 0) {
      this.violation("malformed END");
      return;
    }
    const bytes = Number(payload.readBigUInt64BE(0));
    const messages = Number(payload.readBigUInt64BE(8));
    const digest = payload.subarray(16);
    const ours = this.recvHash.digest();
    if (bytes !== this.recvBytes || messages !== this.recvMessages || !digest.equals(ours)) {
      const err = new NovaError(
        "NOVA_DWCP_INTEGRITY",
        `Channel "${this.label}" failed its end-to-end digest check`,
        {
          details: {
            expectedBytes: bytes,
            receivedBytes: this.recvBytes,
            expectedMessages: messages,
            receivedMessages: this.recvMessages,
          },
        },
      );
      this.host.enqueue({
        type: FrameType.ABORT,
        flags: 0,
        channel: this.id,
        payload: Buffer.from("digest mismatch"),
      });
      this.fail(err);
      return;
    }
    this.recvEnded = true;
    this.host.enqueue({ type: FrameType.END_OK, flags: 0, channel: this.id, payload: Buffer.alloc(0) });
    if (this.reader && this.queue.length === 0) {
      const r = this.reader;
      this.reader = null;
      r.resolve(null);
    }
    this.maybeFinished();
  }

  /** @internal The peer verified our direction. */
  onEndOk(): void {
    if (!this.sendEnded || this.sendDone) {
      this.violation("END_OK without END");
      return;
    }
    this.sendDone = true;
    this.endWaiter?.resolve();
    this.endWaiter = null;
    this.maybeFinished();
  }

  /** @internal The peer aborted the channel. */
  onAbort(reason: Buffer): void {
    const text = reason.toString("utf8");
    const code = text === "digest mismatch" ? "NOVA_DWCP_INTEGRITY" : "NOVA_DWCP_CLOSED";
    this.fail(new NovaError(code, `Channel "${this.label}" aborted by the peer: ${text}`));
  }

  /** @internal Ends the channel with an error (session failure or abort). */
  fail(err: Error): void {
    if (this.failure) return;
    if (this.sendDone && this.recvEnded) return;
    this.failure = err;
    for (const q of this.queue.splice(0)) this.release(q.wire);
    if (this.partsWire > 0) this.release(this.partsWire);
    this.parts = [];
    this.partsWire = 0;
    this.partsBytes = 0;
    this.reader?.reject(err);
    this.reader = null;
    this.endWaiter?.reject(err);
    this.endWaiter = null;
    this.creditWaiter?.reject(err);
    this.creditWaiter = null;
    this.host.finished(this.id);
  }

  private violation(what: string): void {
    const err = new NovaError("NOVA_DWCP_PROTOCOL", `Channel "${this.label}": ${what}`);
    this.fail(err);
    this.host.protocolViolation(err);
  }

  private maybeFinished(): void {
    if (this.sendDone && this.recvEnded) this.host.finished(this.id);
  }
}
