import { describe, expect, it } from "vitest";
import {
  actUntil,
  type ClaimContext,
  claimDecision,
  DEFAULT_LEASE_TIMING,
  type LeaseRow,
  leaseTimingProblem,
} from "./leader-lease.js";

const row = (r: Partial<LeaseRow> = {}): LeaseRow => ({
  holder: "other",
  epoch: 7,
  holderPid: 4242,
  expired: false,
  ...r,
});
const follower = (c: Partial<ClaimContext> = {}): ClaimContext => ({
  self: "me",
  role: { kind: "follower" },
  holderSessionAlive: true,
  embedded: false,
  ...c,
});

describe("claimDecision", () => {
  it("follows a live holder whose lease has not run out", () => {
    expect(claimDecision(row(), follower())).toEqual({ kind: "follow", holder: "other" });
  });

  it("takes a released lease", () => {
    expect(claimDecision(row({ holder: null }), follower())).toEqual({ kind: "take", reason: "free" });
  });

  it("takes a lease the database's clock says ran out", () => {
    expect(claimDecision(row({ expired: true }), follower())).toEqual({ kind: "take", reason: "expired" });
  });

  it("takes a lease at once when the holder's database session is gone (kill -9)", () => {
    expect(claimDecision(row(), follower({ holderSessionAlive: false }))).toEqual({
      kind: "take",
      reason: "holder-gone",
    });
  });

  it("does not take a lease without a recorded session when the session check is unknown", () => {
    expect(claimDecision(row({ holderPid: null }), follower({ holderSessionAlive: undefined }))).toEqual({
      kind: "follow",
      holder: "other",
    });
  });

  it("takes it unconditionally on the embedded database, where one process owns it", () => {
    expect(claimDecision(row(), follower({ embedded: true }))).toEqual({ kind: "take", reason: "embedded" });
  });

  it("starts a new term over its own row after stepping down", () => {
    expect(claimDecision(row({ holder: "me" }), follower())).toEqual({
      kind: "take",
      reason: "own-after-step-down",
    });
  });

  it("renews its own lease at its own epoch", () => {
    expect(
      claimDecision(row({ holder: "me", epoch: 7 }), follower({ role: { kind: "leader", epoch: 7 } })),
    ).toEqual({ kind: "renew" });
  });

  it("stops at once when another replica holds the lease it thought it held", () => {
    const d = claimDecision(
      row({ holder: "other", epoch: 8 }),
      follower({ role: { kind: "leader", epoch: 7 } }),
    );
    expect(d).toMatchObject({ kind: "lost", holder: "other" });
  });

  it("stops when its own row is at another epoch", () => {
    const d = claimDecision(
      row({ holder: "me", epoch: 9 }),
      follower({ role: { kind: "leader", epoch: 7 } }),
    );
    expect(d).toMatchObject({ kind: "lost", holder: "me" });
  });

  it("stops when the row was released under it, even on the embedded database", () => {
    const d = claimDecision(
      row({ holder: null }),
      follower({ role: { kind: "leader", epoch: 7 }, embedded: true }),
    );
    expect(d).toMatchObject({ kind: "lost", holder: null });
  });
});

describe("actUntil", () => {
  it("ends the margin before the earliest expiry, counted from the send", () => {
    expect(actUntil(10_000, 5000, 1500)).toBe(13_500);
  });
});

describe("leaseTimingProblem", () => {
  it("accepts the defaults", () => {
    expect(leaseTimingProblem(DEFAULT_LEASE_TIMING)).toBeUndefined();
  });

  it("refuses a TTL that leaves the leader fewer than two renewals", () => {
    expect(leaseTimingProblem({ ttlMs: 3000, renewEveryMs: 1000, marginMs: 1500 })).toContain(
      "at least two renewal intervals",
    );
  });

  it("refuses non-positive times", () => {
    expect(leaseTimingProblem({ ttlMs: 0, renewEveryMs: 1000, marginMs: 0 })).toContain("positive");
  });
});
