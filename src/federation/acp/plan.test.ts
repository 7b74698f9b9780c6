import { describe, expect, it } from "vitest";
import type { SignedStatement, StatementKind } from "../../api/types/acp.js";
import type { IncomingHandoff, OutgoingHandoff } from "../../cluster/store/acp.js";
import { HANDOFF_SOURCE, HANDOFF_TARGET } from "../../states/handoff.js";
import {
  type CopyState,
  decideDelivery,
  nextIncomingAction,
  nextOutgoingAction,
  type OutgoingObservations,
  type PeerAnswer,
} from "./plan.js";

const S = "00000000-0000-4000-8000-00000000000a";
const D = "00000000-0000-4000-8000-00000000000b";
const H = "00000000-0000-4000-8000-0000000000c1";
const V = "00000000-0000-4000-8000-0000000000d1";

const st = (kind: StatementKind, epoch = 2): SignedStatement => ({
  kind,
  handoff: H,
  vm: V,
  source: S,
  target: D,
  epoch,
  issuedAt: "t",
  sig: "x",
});
const said = (kind: StatementKind, epoch = 2): PeerAnswer => ({
  kind: "statement",
  statement: st(kind, epoch),
});
const unreachable: PeerAnswer = { kind: "unreachable", message: "connect ECONNREFUSED" };
const refused: PeerAnswer = {
  kind: "refused",
  code: "NOVA_NO_CAPACITY",
  message: "no host has 4096 MiB free",
};

/** What both sides' records share. */
const common = {
  id: H,
  vmId: V,
  vmName: "web",
  fromEpoch: 1,
  reason: "",
  statements: {},
  createdAt: "",
  stateChangedAt: "",
  settledAt: null,
};
const out = (state: OutgoingHandoff["state"]): OutgoingHandoff => ({
  ...common,
  state,
  migrationId: null,
  targetClusterId: D,
});
const inc = (state: IncomingHandoff["state"]): IncomingHandoff => ({
  ...common,
  state,
  sourceClusterId: S,
  hostId: null,
});
const o = (over: Partial<OutgoingObservations> = {}): OutgoingObservations => ({ peer: "active", ...over });

describe("the source's next action", () => {
  it("preparing: delivers prepare until answered, then moves on the answer", () => {
    expect(nextOutgoingAction(out("preparing"), o())).toEqual({ kind: "deliver", statement: "prepare" });
    expect(nextOutgoingAction(out("preparing"), o({ answer: unreachable }))).toMatchObject({ kind: "wait" });
    expect(nextOutgoingAction(out("preparing"), o({ answer: { kind: "pending" } }))).toMatchObject({
      kind: "wait",
    });
    expect(nextOutgoingAction(out("preparing"), o({ answer: said("prepared") }))).toMatchObject({
      kind: "transition",
      to: "transferring",
      keep: st("prepared"),
    });
    expect(nextOutgoingAction(out("preparing"), o({ answer: said("aborted") }))).toMatchObject({
      kind: "transition",
      to: "aborting",
    });
    expect(nextOutgoingAction(out("preparing"), o({ answer: refused }))).toMatchObject({
      kind: "transition",
      to: "aborting",
      reason: expect.stringContaining("no host has 4096 MiB free"),
    });
    for (const peer of ["quarantined", "removed"] as const)
      expect(nextOutgoingAction(out("preparing"), o({ peer }))).toMatchObject({
        kind: "transition",
        to: "aborting",
      });
  });

  it("transferring: waits for the run, aborts without one or when the peer is cut off", () => {
    expect(nextOutgoingAction(out("transferring"), o({ transferActive: true }))).toMatchObject({
      kind: "wait",
    });
    expect(nextOutgoingAction(out("transferring"), o({ transferActive: false }))).toMatchObject({
      kind: "transition",
      to: "aborting",
      reason: expect.stringContaining("restarted"),
    });
    expect(
      nextOutgoingAction(out("transferring"), o({ transferActive: true, peer: "quarantined" })),
    ).toMatchObject({
      kind: "transition",
      to: "aborting",
    });
  });

  it("released: fences the source first, then delivers release until owned or returned, never aborting", () => {
    expect(nextOutgoingAction(out("released"), o({ answer: said("owned") }))).toEqual({
      kind: "fence-source",
    });
    const fenced = (over: Partial<OutgoingObservations>) => o({ sourceFenced: true, ...over });
    expect(nextOutgoingAction(out("released"), fenced({}))).toEqual({
      kind: "deliver",
      statement: "release",
    });
    expect(nextOutgoingAction(out("released"), fenced({ answer: unreachable }))).toMatchObject({
      kind: "wait",
    });
    // The destination is still resuming its copy: ask again on the next pass.
    expect(nextOutgoingAction(out("released"), fenced({ answer: { kind: "pending" } }))).toMatchObject({
      kind: "wait",
    });
    expect(nextOutgoingAction(out("released"), fenced({ answer: said("owned") }))).toMatchObject({
      kind: "transition",
      to: "completed",
      keep: st("owned"),
    });
    expect(nextOutgoingAction(out("released"), fenced({ answer: said("returned", 3) }))).toMatchObject({
      kind: "transition",
      to: "reclaimed",
    });
    // However long the peer is cut off, the VM is never taken back.
    for (const peer of ["quarantined", "removed"] as const)
      expect(nextOutgoingAction(out("released"), fenced({ peer }))).toMatchObject({ kind: "needs-decision" });
    expect(
      nextOutgoingAction(
        out("released"),
        fenced({
          answer: { kind: "refused", code: "NOVA_HOST_UNREACHABLE", message: "agent h1 did not answer" },
        }),
      ),
    ).toMatchObject({ kind: "wait" });
    for (const answer of [refused, { kind: "unknown" } as const, said("aborted"), said("prepared")])
      expect(nextOutgoingAction(out("released"), fenced({ answer }))).toMatchObject({
        kind: "needs-decision",
      });
    for (const answer of [undefined, unreachable, refused, said("aborted")]) {
      const a = nextOutgoingAction(out("released"), fenced(answer ? { answer } : {}));
      expect(a.kind === "transition" ? a.to : a.kind).not.toBe("aborting");
    }
  });

  it("completed: removes the source copy once, after looking", () => {
    expect(nextOutgoingAction(out("completed"), o())).toEqual({ kind: "observe-source" });
    expect(nextOutgoingAction(out("completed"), o({ sourceCopy: "unknown" }))).toEqual({
      kind: "observe-source",
    });
    for (const sourceCopy of ["paused", "running", "incomplete"] as const)
      expect(nextOutgoingAction(out("completed"), o({ sourceCopy }))).toEqual({ kind: "remove-source-copy" });
    expect(nextOutgoingAction(out("completed"), o({ sourceCopy: "gone" }))).toEqual({ kind: "done" });
  });

  it("reclaimed: resumes the paused source copy; a lost one needs a human", () => {
    expect(nextOutgoingAction(out("reclaimed"), o())).toEqual({ kind: "observe-source" });
    expect(nextOutgoingAction(out("reclaimed"), o({ sourceCopy: "paused" }))).toEqual({
      kind: "resume-source",
    });
    expect(nextOutgoingAction(out("reclaimed"), o({ sourceCopy: "running" }))).toEqual({ kind: "done" });
    expect(nextOutgoingAction(out("reclaimed"), o({ sourceCopy: "gone" }))).toMatchObject({
      kind: "needs-decision",
    });
  });

  it("aborting: the source runs first, then abort is delivered until acknowledged", () => {
    expect(nextOutgoingAction(out("aborting"), o())).toEqual({ kind: "observe-source" });
    expect(nextOutgoingAction(out("aborting"), o({ sourceCopy: "paused", answer: said("aborted") }))).toEqual(
      {
        kind: "resume-source",
      },
    );
    const running = (over: Partial<OutgoingObservations>) => o({ sourceCopy: "running", ...over });
    expect(nextOutgoingAction(out("aborting"), running({}))).toEqual({ kind: "deliver", statement: "abort" });
    expect(nextOutgoingAction(out("aborting"), running({ answer: unreachable }))).toMatchObject({
      kind: "wait",
    });
    expect(nextOutgoingAction(out("aborting"), running({ answer: said("aborted") }))).toMatchObject({
      kind: "transition",
      to: "aborted",
    });
    for (const peer of ["quarantined", "removed"] as const)
      expect(nextOutgoingAction(out("aborting"), running({ peer }))).toMatchObject({
        kind: "transition",
        to: "aborted",
      });
    expect(nextOutgoingAction(out("aborting"), running({ answer: said("owned") }))).toMatchObject({
      kind: "needs-decision",
    });
    expect(nextOutgoingAction(out("aborted"), o())).toEqual({ kind: "done" });
  });

  it("has a case for every source state", () => {
    for (const s of HANDOFF_SOURCE.list) expect(nextOutgoingAction(out(s), o())).toBeDefined();
  });
});

describe("the destination's answer to a delivery", () => {
  it("with no record: prepares on prepare, records an abort, refuses a release", () => {
    expect(decideDelivery(undefined, "prepare", "gone")).toMatchObject({
      kind: "create",
      state: "prepared",
      startCopy: true,
    });
    expect(decideDelivery(undefined, "abort", "gone")).toMatchObject({
      kind: "create",
      state: "aborted",
      startCopy: false,
    });
    expect(decideDelivery(undefined, "release", "gone")).toMatchObject({
      kind: "refuse",
      code: "NOVA_ACP_PROTOCOL",
    });
  });

  it("prepared: owns only with a whole copy, gives back otherwise, drops on abort", () => {
    const p = inc("prepared");
    expect(decideDelivery(p, "release", "paused")).toMatchObject({ kind: "transition", to: "resuming" });
    for (const copy of ["incomplete", "gone", "running"] as CopyState[])
      expect(decideDelivery(p, "release", copy)).toMatchObject({ kind: "transition", to: "returned" });
    expect(decideDelivery(p, "release", "unknown")).toMatchObject({
      kind: "refuse",
      code: "NOVA_HOST_UNREACHABLE",
      equivocation: false,
    });
    expect(decideDelivery(p, "abort", "paused")).toMatchObject({ kind: "transition", to: "aborted" });
    // A repeated prepare is answered with the recorded `prepared`, or the copy is started
    // (again) when that was never recorded (the database failed after the copy started).
    const answered = { ...p, statements: { prepare: st("prepare"), prepared: st("prepared") } };
    expect(decideDelivery(answered, "prepare", "incomplete")).toEqual({ kind: "repeat" });
    expect(decideDelivery(answered, "prepare", "gone")).toEqual({ kind: "restart-copy" });
    expect(decideDelivery(p, "prepare", "incomplete")).toEqual({ kind: "restart-copy" });
  });

  it("resuming, owned or returned: repeats its answer; an abort now is the source contradicting itself", () => {
    for (const state of ["resuming", "owned", "returned"] as const) {
      expect(decideDelivery(inc(state), "release", "running")).toEqual({ kind: "repeat" });
      expect(decideDelivery(inc(state), "prepare", "running")).toEqual({ kind: "repeat" });
      expect(decideDelivery(inc(state), "abort", "running")).toMatchObject({
        kind: "refuse",
        equivocation: true,
      });
    }
  });

  it("aborted: a late prepare is refused and starts nothing; a release is a contradiction", () => {
    expect(decideDelivery(inc("aborted"), "abort", "gone")).toEqual({ kind: "repeat" });
    expect(decideDelivery(inc("aborted"), "prepare", "gone")).toMatchObject({
      kind: "refuse",
      code: "NOVA_ACP_ABORTED",
    });
    expect(decideDelivery(inc("aborted"), "release", "gone")).toMatchObject({
      kind: "refuse",
      equivocation: true,
    });
  });
});

describe("the destination's next action", () => {
  const io = (
    copy: CopyState,
    over: { answer?: PeerAnswer; peer?: "active" | "quarantined" | "removed" } = {},
  ) => ({
    peer: over.peer ?? ("active" as const),
    copy,
    ...(over.answer ? { answer: over.answer } : {}),
  });

  it("prepared: asks the source, applies its decision, waits while it has none", () => {
    expect(nextIncomingAction(inc("prepared"), io("incomplete"))).toEqual({ kind: "ask-status" });
    expect(nextIncomingAction(inc("prepared"), io("paused", { answer: said("release") }))).toEqual({
      kind: "apply",
      statement: st("release"),
    });
    expect(nextIncomingAction(inc("prepared"), io("paused", { answer: said("abort") }))).toEqual({
      kind: "apply",
      statement: st("abort"),
    });
    expect(nextIncomingAction(inc("prepared"), io("paused", { answer: { kind: "pending" } }))).toMatchObject({
      kind: "wait",
    });
    expect(nextIncomingAction(inc("prepared"), io("paused", { answer: unreachable }))).toMatchObject({
      kind: "wait",
    });
    expect(nextIncomingAction(inc("prepared"), io("paused", { answer: { kind: "unknown" } }))).toMatchObject({
      kind: "needs-decision",
    });
    expect(nextIncomingAction(inc("prepared"), io("paused", { peer: "removed" }))).toMatchObject({
      kind: "needs-decision",
    });
    // The source's word counts even from a peer cut off since: it is signed.
    expect(
      nextIncomingAction(inc("prepared"), io("paused", { peer: "quarantined", answer: said("abort") })),
    ).toMatchObject({
      kind: "apply",
    });
  });

  it("resuming: resumes the copy, owns once it runs, gives the VM back if it died first", () => {
    expect(nextIncomingAction(inc("resuming"), io("paused"))).toEqual({ kind: "resume-copy" });
    expect(nextIncomingAction(inc("resuming"), io("unknown"))).toMatchObject({ kind: "wait" });
    expect(nextIncomingAction(inc("resuming"), io("running"))).toMatchObject({
      kind: "transition",
      to: "owned",
    });
    for (const copy of ["gone", "incomplete"] as const)
      expect(nextIncomingAction(inc("resuming"), io(copy))).toMatchObject({
        kind: "transition",
        to: "returned",
      });
  });

  it("owned is the reconciler's; returned and aborted remove the copy", () => {
    for (const copy of ["running", "gone", "paused"] as const)
      expect(nextIncomingAction(inc("owned"), io(copy))).toEqual({ kind: "done" });
    for (const state of ["returned", "aborted"] as const) {
      expect(nextIncomingAction(inc(state), io("paused"))).toEqual({ kind: "remove-copy" });
      expect(nextIncomingAction(inc(state), io("incomplete"))).toEqual({ kind: "remove-copy" });
      expect(nextIncomingAction(inc(state), io("unknown"))).toMatchObject({ kind: "wait" });
      expect(nextIncomingAction(inc(state), io("gone"))).toEqual({ kind: "done" });
    }
  });

  it("never resumes a copy it does not own", () => {
    for (const state of HANDOFF_TARGET.list) {
      if (state === "resuming") continue;
      for (const copy of ["paused", "incomplete", "gone", "unknown"] as CopyState[])
        for (const answer of [undefined, said("release"), said("abort"), unreachable])
          expect(nextIncomingAction(inc(state), io(copy, answer ? { answer } : {})).kind).not.toBe(
            "resume-copy",
          );
    }
  });
});
