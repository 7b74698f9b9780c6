import { describe, expect, it } from "vitest";
import type { ControlPlane } from "../../api/types/control-plane.js";
import { replicaRows } from "./control-plane.js";

const replica = (id: string, leader: boolean, live: boolean, age: number) => ({
  id,
  apiUrl: `https://${id}:7700`,
  hostName: id,
  version: "0.1.0",
  startedAt: "2026-12-07T03:00:00.000Z",
  lastSeenAt: "2026-12-07T03:00:00.000Z",
  lastSeenAgeSeconds: age,
  leader,
  live,
});

describe("replicaRows", () => {
  it("lists the leader first, then live followers, then the ones not seen lately, marking who answered", () => {
    const cp: ControlPlane = {
      self: "b",
      leader: { replica: "c", apiUrl: "https://c:7700", epoch: 4, since: null, expiresInMs: 4000 },
      epoch: 4,
      leaseTtlMs: 5000,
      replicas: [replica("a", false, false, 400), replica("b", false, true, 1), replica("c", true, true, 0)],
    };
    expect(replicaRows(cp)).toEqual([
      ["c", "leader", "https://c:7700", "c", "0.1.0", "0s ago", "yes"],
      ["b (answered)", "follower", "https://b:7700", "b", "0.1.0", "1s ago", "yes"],
      ["a", "follower", "https://a:7700", "a", "0.1.0", "6m ago", "no"],
    ]);
  });
});
