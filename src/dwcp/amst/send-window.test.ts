import { describe, expect, it } from "vitest";
import { FRAME_HEADER_BYTES, FrameType } from "../wire/frame.js";
import { SEND_CLASSES, SendWindow } from "./send-window.js";

const data = (n: number) => ({ type: FrameType.DATA, flags: 0, channel: 1, payload: Buffer.alloc(n) });

describe("send window", () => {
  it("resends a lost connection's unacknowledged frames first, in order", () => {
    const w = new SendWindow(1 << 20);
    const a = { id: 1 };
    const b = { id: 2 };
    for (let i = 0; i < 6; i++) w.enqueue(data(10));
    for (let i = 0; i < 6; i++) w.markSent(i % 2 === 0 ? a : b);
    w.onAck(1, 0);
    expect(w.requeueFrom(a)).toBe(2);
    w.enqueue(data(10));
    const order: number[] = [];
    while (w.peek()) order.push(w.markSent(b).frame.seq);
    expect(order).toEqual([3, 5, 7]);
  });

  it("grants credit only as the peer consumes", () => {
    const frame = 40 + FRAME_HEADER_BYTES;
    const w = new SendWindow(100);
    w.enqueue(data(40));
    expect(w.hasRoom(100 - frame)).toBe(true);
    expect(w.hasRoom(100 - frame + 1)).toBe(false);
    w.enqueue(data(40));
    expect(w.outstandingBytes).toBe(2 * frame);
    expect(w.hasRoom(1)).toBe(false);
    w.markSent({ id: 1 });
    w.onAck(1, frame);
    expect(w.hasRoom(100 - frame)).toBe(true);
    expect(w.hasRoom(100 - frame + 1)).toBe(false);
  });

  it("writes by priority class, in sequence order within a class, resends before all", () => {
    const cls = (name: (typeof SEND_CLASSES)[number]) => SEND_CLASSES.indexOf(name);
    const w = new SendWindow(1 << 20);
    const a = { id: 1 };
    w.enqueue(data(10), cls("bulk")); // 1
    w.enqueue(data(10), cls("last")); // 2
    w.enqueue(data(10), cls("normal")); // 3
    w.enqueue(data(10), cls("bulk")); // 4
    w.enqueue(data(10), cls("urgent")); // 5
    expect(w.queuedCount).toBe(5);
    expect(w.markSent(a).frame.seq).toBe(5);
    expect(w.markSent(a).frame.seq).toBe(3);
    // A broken connection's frames go out again before anything still queued.
    expect(w.requeueFrom(a)).toBe(2);
    expect(w.queuedCount).toBe(5);
    const order: number[] = [];
    while (w.peek()) order.push(w.markSent({ id: 2 }).frame.seq);
    expect(order).toEqual([3, 5, 1, 4, 2]);
    expect(w.queuedCount).toBe(0);
  });
});
