import { describe, expect, it } from "vitest";
import { type QueuedOrActive, startable } from "./queue.js";

const m = (id: string, state: string, from: string, to: string, t: number): QueuedOrActive => ({
  id,
  state,
  sourceHostId: from,
  targetHostId: to,
  createdAt: new Date(t * 1000).toISOString(),
});

describe("migration queue", () => {
  it("starts queued migrations oldest first within each host's outgoing limit", () => {
    const ms = [
      m("c", "queued", "a", "y", 3),
      m("b", "queued", "a", "x", 2),
      m("r", "transferring", "a", "z", 1),
    ];
    expect(startable(ms, { maxOutgoing: 2, maxIncoming: 2 }).map((x) => x.id)).toEqual(["b"]);
  });

  it("queues rather than exceeds a target's incoming limit", () => {
    const ms = [m("a1", "queued", "a", "t", 1), m("b1", "queued", "b", "t", 2)];
    expect(startable(ms, { maxOutgoing: 2, maxIncoming: 1 }).map((x) => x.id)).toEqual(["a1"]);
  });

  it("starts nothing when every host is busy", () => {
    const ms = [m("r", "preparing", "a", "b", 1), m("q", "queued", "a", "c", 2)];
    expect(startable(ms, { maxOutgoing: 1, maxIncoming: 1 })).toEqual([]);
  });
});
