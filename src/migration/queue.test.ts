import { describe, expect, it } from "vitest";
import { type QueuedOrActive, startable, toRun } from "./queue.js";

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

  it("counts a queued migration whose runner already started as in flight", () => {
    const ms = [m("s", "queued", "a", "b", 1), m("q", "queued", "a", "c", 2)];
    expect(startable(ms, { maxOutgoing: 1, maxIncoming: 1 }, new Set(["s"]))).toEqual([]);
  });
});

describe("migrations to run", () => {
  const limits = { maxOutgoing: 1, maxIncoming: 1 };

  it("resumes every migration past queued that has no runner, ignoring the limits", () => {
    const ms = [m("x", "switching-over", "a", "b", 1), m("y", "transferring", "a", "b", 2)];
    expect(toRun(ms, new Set(), limits).map((x) => x.id)).toEqual(["x", "y"]);
  });

  it("starts nothing twice", () => {
    const ms = [m("x", "switching-over", "a", "b", 1), m("q", "queued", "c", "d", 2)];
    expect(toRun(ms, new Set(["x", "q"]), limits)).toEqual([]);
  });

  it("starts queued migrations the limits allow, counting running ones", () => {
    const ms = [
      m("q2", "queued", "a", "d", 3),
      m("q1", "queued", "c", "d", 2),
      m("s", "queued", "a", "b", 1),
    ];
    // s has a runner (not yet preparing): a is busy out, so only q1 starts.
    expect(toRun(ms, new Set(["s"]), limits).map((x) => x.id)).toEqual(["q1"]);
  });
});
