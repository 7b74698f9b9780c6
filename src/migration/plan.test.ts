import { describe, expect, it } from "vitest";
import type { AgentOutgoingStatus } from "../api/types/agent.js";
import type { MigrationState } from "../states/migration.js";
import {
  type MigrationAction,
  movedBytes,
  nextAction,
  nextMovedMark,
  type Observations,
  type PlanRecord,
  STALL_MIN_BYTES,
} from "./plan.js";

const policy = { pollMs: 200, unreachableGraceMs: 60_000, stallGraceMs: 60_000 };
const rec = (state: MigrationState, over: Partial<PlanRecord> = {}): PlanRecord => ({
  state,
  vmId: "00000000-0000-4000-8000-000000000001",
  sourceHost: "src",
  targetHost: "dst",
  ...over,
});
const obs = (over: Partial<Observations>): Observations => ({
  step: "picked-up",
  shuttingDown: false,
  cancelRequested: false,
  deadline: { passed: false, timeoutSeconds: 600 },
  baseImageCopied: false,
  postcopy: { wanted: false, asked: false },
  ...over,
});
type Memory = NonNullable<AgentOutgoingStatus["memory"]>;
type Mirror = NonNullable<AgentOutgoingStatus["mirror"]>;
const mem = (over: Partial<Memory>): Memory => ({
  status: "active",
  totalBytes: 1000,
  transferredBytes: 400,
  remainingBytes: 600,
  pass: 0,
  pagesPerSecond: 10,
  dirtyBytesPerSecond: 0,
  mbps: 100,
  ...over,
});
const mirror = (over: Partial<Mirror>): Mirror => ({
  jobId: "j",
  status: "running",
  ready: false,
  offset: 10,
  len: 4096,
  ...over,
});
const status = (over: Partial<AgentOutgoingStatus>): Observations["source"] => ({
  kind: "status",
  status: { vmStatus: "running", mirror: null, memory: null, ...over },
});
const unreachable = (forMs: number): Observations["source"] => ({ kind: "unreachable", forMs });

const failed = (reason: string): MigrationAction => ({ kind: "rollback", outcome: "failed", reason });
const cancelled: MigrationAction = {
  kind: "rollback",
  outcome: "cancelled",
  reason: "cancelled by the user",
};
const busyGuest = failed(
  "timed out after 600 s (the guest dirties memory faster than it can be sent; try auto-converge, a higher downtime limit or post-copy)",
);
const diskBehind = failed(
  "timed out after 600 s while mirroring the disk (the guest writes its disk faster than the link sends it, or the disk needs longer; try a longer timeout)",
);
const stalledLink = failed(
  "nothing moved toward target host dst for 60 s: the link between the hosts is down or stalled (check it, then migrate again)",
);
const lost = (why: string): MigrationAction => ({
  kind: "lost",
  reason: `post-copy failed, the VM's memory is split between hosts and it is lost: ${why}`,
});

type Case = [name: string, record: PlanRecord, observations: Observations, expected: MigrationAction];

function table(cases: Case[]): void {
  it.each(cases)("%s", (_name, r, o, expected) => {
    expect(nextAction(r, o, policy)).toEqual(expected);
  });
}

/**
 * The cases every phase in which the source works (mirroring, copying memory) answers the
 * same way: a poll when nothing is known, a rollback on shutdown, cancel, deadline, a lost
 * source QEMU, a source unreachable past the grace or nothing moved past the stall grace,
 * a wait within the grace. `timedOut` is the phase's own reason for a deadline.
 */
function whileSourceWorks(
  r: PlanRecord,
  o: (over: Partial<Observations>) => Observations,
  timedOut: MigrationAction,
): Case[] {
  const deadline = { passed: true, timeoutSeconds: 600 };
  return [
    ["nothing known yet: polls", r, o({}), { kind: "poll" }],
    [
      "server shutting down: rolled back",
      r,
      o({ shuttingDown: true }),
      failed("the server is shutting down"),
    ],
    ["cancel requested: rolled back as cancelled", r, o({ cancelRequested: true }), cancelled],
    ["deadline passed: rolled back with the phase's timeout advice", r, o({ deadline }), timedOut],
    [
      "deadline passed after a stall too short to blame (under 5 s): the phase's advice",
      r,
      o({ deadline, stalledForMs: 4999 }),
      timedOut,
    ],
    [
      "deadline passed while nothing moved: rolled back naming the stalled link",
      r,
      o({ deadline, stalledForMs: 12_400 }),
      failed(
        "timed out after 600 s: nothing moved toward target host dst for the last 12 s (the link between the hosts is down or stalled; check it, then migrate again)",
      ),
    ],
    [
      "nothing moved for longer than the stall grace (60 s): rolled back",
      r,
      o({ source: status({ mirror: mirror({}), memory: mem({}) }), stalledForMs: 60_001 }),
      stalledLink,
    ],
    [
      "nothing moved, source QEMU gone too: the QEMU is named",
      r,
      o({ source: status({ vmStatus: "absent" }), stalledForMs: 60_001 }),
      failed("the source QEMU on src is gone"),
    ],
    [
      "nothing moved, source unreachable within its grace: waits (unreachable is its own grace)",
      r,
      o({ source: unreachable(10), stalledForMs: 60_001 }),
      { kind: "wait", ms: 200 },
    ],
    [
      "source unreachable within the grace (60 s): waits a poll interval",
      r,
      o({ source: unreachable(60_000) }),
      { kind: "wait", ms: 200 },
    ],
    [
      "source unreachable briefly: waits a poll interval",
      r,
      o({ source: unreachable(10) }),
      { kind: "wait", ms: 200 },
    ],
    [
      "source unreachable past the grace: rolled back",
      r,
      o({ source: unreachable(60_001) }),
      failed("source host src unreachable for 60 s"),
    ],
    [
      "source QEMU gone: rolled back",
      r,
      o({ source: status({ vmStatus: "absent" }) }),
      failed("the source QEMU on src is gone"),
    ],
  ];
}

describe("migration plan: a run picks up a record", () => {
  const o = obs({ step: "picked-up" });
  table([
    [
      "queued: moves it to preparing",
      rec("queued"),
      o,
      { kind: "mark", to: "preparing", reason: "preparing the target", next: "preparing" },
    ],
    [
      "preparing: the server restarted mid-transfer, rolled back",
      rec("preparing"),
      o,
      failed(
        "the server restarted (or another replica took over as control-plane leader) during the transfer",
      ),
    ],
    [
      "transferring: the server restarted mid-transfer, rolled back",
      rec("transferring"),
      o,
      failed(
        "the server restarted (or another replica took over as control-plane leader) during the transfer",
      ),
    ],
    [
      "switching-over: re-runs the switch-over",
      rec("switching-over"),
      o,
      { kind: "start-switchover", next: "switching-over" },
    ],
    ["completed: nothing to do", rec("completed"), o, { kind: "ended" }],
    ["failed: nothing to do", rec("failed"), o, { kind: "ended" }],
    ["cancelled: nothing to do", rec("cancelled"), o, { kind: "ended" }],
    [
      "queued, VM deleted: abandoned",
      rec("queued", { vmId: null }),
      o,
      { kind: "abandon", reason: "the VM was deleted" },
    ],
    [
      "transferring, VM deleted: abandoned",
      rec("transferring", { vmId: null }),
      o,
      { kind: "abandon", reason: "the VM was deleted" },
    ],
    [
      "switching-over, VM deleted: abandoned",
      rec("switching-over", { vmId: null }),
      o,
      { kind: "abandon", reason: "the VM was deleted" },
    ],
    // A cancel request is not looked at before the target is prepared.
    [
      "queued with a cancel request: still moves to preparing",
      rec("queued"),
      obs({ cancelRequested: true }),
      { kind: "mark", to: "preparing", reason: "preparing the target", next: "preparing" },
    ],
    [
      "switching-over with a cancel request: still switches over",
      rec("switching-over"),
      obs({ cancelRequested: true }),
      { kind: "start-switchover", next: "switching-over" },
    ],
  ]);
});

describe("migration plan: preparing the target", () => {
  table([
    [
      "image already on the target: prepares the target",
      rec("preparing"),
      obs({ step: "preparing", imageOnTarget: true }),
      { kind: "prepare-target", next: "target-ready" },
    ],
    [
      "image missing on the target: copies it",
      rec("preparing"),
      obs({ step: "preparing", imageOnTarget: false }),
      { kind: "copy-image", next: "image-ready" },
    ],
    [
      "image copied: prepares the target",
      rec("preparing"),
      obs({ step: "image-ready", baseImageCopied: true }),
      { kind: "prepare-target", next: "target-ready" },
    ],
    [
      "target ready: records the disk mirror phase with whether the image was copied",
      rec("preparing"),
      obs({ step: "target-ready", baseImageCopied: true }),
      {
        kind: "mark",
        to: "transferring",
        reason: "mirroring the disk",
        result: { baseImageCopied: true },
        next: "target-ready",
      },
    ],
    [
      "target ready, cancel requested: rolled back as cancelled",
      rec("preparing"),
      obs({ step: "target-ready", cancelRequested: true }),
      cancelled,
    ],
    [
      "target ready and transferring: starts the mirror",
      rec("transferring"),
      obs({ step: "target-ready" }),
      { kind: "start-mirror", next: "mirroring" },
    ],
    [
      "target ready and transferring, cancel requested: starts the mirror (the poll cancels)",
      rec("transferring"),
      obs({ step: "target-ready", cancelRequested: true }),
      { kind: "start-mirror", next: "mirroring" },
    ],
  ]);
});

describe("migration plan: mirroring the disk", () => {
  const r = rec("transferring");
  const o = (over: Partial<Observations>) => obs({ step: "mirroring", baseImageCopied: true, ...over });
  table([
    ...whileSourceWorks(r, o, diskBehind),
    [
      "nothing moved for the whole stall grace but not longer: waits",
      r,
      o({ source: status({ mirror: mirror({}) }), stalledForMs: 60_000 }),
      { kind: "wait", ms: 200, progress: "disk-mirror" },
    ],
    [
      "mirror error: rolled back",
      r,
      o({ source: status({ mirror: mirror({ error: "ENOSPC" }) }) }),
      failed("disk mirror failed: ENOSPC"),
    ],
    [
      "memory status of an earlier migration: ignored while mirroring",
      r,
      o({ source: status({ mirror: mirror({}), memory: mem({ status: "failed" }) }) }),
      { kind: "wait", ms: 200, progress: "disk-mirror" },
    ],
    [
      "mirror catching up: saves progress and waits",
      r,
      o({ source: status({ mirror: mirror({}) }) }),
      { kind: "wait", ms: 200, progress: "disk-mirror" },
    ],
    [
      "no mirror job yet: saves progress and waits",
      r,
      o({ source: status({}) }),
      { kind: "wait", ms: 200, progress: "disk-mirror" },
    ],
    [
      "over DWCP, mirror running: memory starts beside it (overlap)",
      r,
      o({ source: status({ mirror: mirror({}), transport: { chosen: "dwcp", mode: "wan", reason: "r" } }) }),
      {
        kind: "mark",
        to: "transferring",
        reason: "copying memory while the disk mirror catches up (pre-copy)",
        result: { baseImageCopied: true },
        next: "mirror-synced",
      },
    ],
    [
      "over DWCP, the mirror still starting (no job yet): memory starts beside it",
      r,
      o({ source: status({ transport: { chosen: "dwcp", mode: "wan", reason: "r" } }) }),
      {
        kind: "mark",
        to: "transferring",
        reason: "copying memory while the disk mirror catches up (pre-copy)",
        result: { baseImageCopied: true },
        next: "mirror-synced",
      },
    ],
    [
      "over DWCP, the mirror's start failed: rolled back",
      r,
      o({
        source: status({
          mirror: mirror({ status: "concluded", error: "NBD negotiation failed" }),
          transport: { chosen: "dwcp", mode: "wan", reason: "r" },
        }),
      }),
      failed("disk mirror failed: NBD negotiation failed"),
    ],
    [
      "over DWCP with post-copy wanted: no overlap, waits for the mirror",
      r,
      o({
        postcopy: { wanted: true, asked: false },
        source: status({ mirror: mirror({}), transport: { chosen: "dwcp", mode: "wan", reason: "r" } }),
      }),
      { kind: "wait", ms: 200, progress: "disk-mirror" },
    ],
    [
      "over QEMU's transport, mirror running: waits until in sync",
      r,
      o({ source: status({ mirror: mirror({}), transport: { chosen: "qemu", mode: null, reason: "r" } }) }),
      { kind: "wait", ms: 200, progress: "disk-mirror" },
    ],
    [
      "mirror in sync: records the memory phase with the disk size",
      r,
      o({ source: status({ mirror: mirror({ ready: true, len: 8192 }) }) }),
      {
        kind: "mark",
        to: "transferring",
        reason: "copying memory (pre-copy)",
        result: { baseImageCopied: true, diskBytes: 8192 },
        progress: "disk-mirror",
        next: "mirror-synced",
      },
    ],
  ]);
});

describe("migration plan: copying memory", () => {
  const r = rec("transferring");
  const o = (over: Partial<Observations>) => obs({ step: "copying-memory", ...over });
  const pc = { wanted: true, asked: false };
  table([
    [
      "mirror synced, pre-copy only: starts memory with automatic switch-over",
      r,
      obs({ step: "mirror-synced" }),
      { kind: "start-memory", autoSwitchover: true, next: "copying-memory" },
    ],
    [
      "mirror synced, post-copy wanted: starts memory with an explicit switch-over",
      r,
      obs({ step: "mirror-synced", postcopy: pc }),
      { kind: "start-memory", autoSwitchover: false, next: "copying-memory" },
    ],
    ...whileSourceWorks(r, o, busyGuest),
    [
      "nothing moved for the whole stall grace but not longer: waits",
      r,
      o({ source: status({ memory: mem({}) }), stalledForMs: 60_000 }),
      { kind: "wait", ms: 200, progress: "memory" },
    ],
    [
      "mirror broke: rolled back",
      r,
      o({ source: status({ mirror: mirror({ ready: true, error: "EIO" }) }) }),
      failed("disk mirror failed: EIO"),
    ],
    [
      "memory transfer failed: rolled back with QEMU's error",
      r,
      o({ source: status({ memory: mem({ status: "failed", errorDesc: "socket closed" }) }) }),
      failed("memory transfer failed: socket closed"),
    ],
    [
      "memory transfer cancelled: rolled back",
      r,
      o({ source: status({ memory: mem({ status: "cancelled" }) }) }),
      failed("memory transfer cancelled"),
    ],
    [
      "pre-copy running: saves progress and waits",
      r,
      o({ source: status({ memory: mem({ pass: 3 }) }) }),
      { kind: "wait", ms: 200, progress: "memory" },
    ],
    [
      "memory not started yet: saves progress and waits",
      r,
      o({ source: status({}) }),
      { kind: "wait", ms: 200, progress: "memory" },
    ],
    [
      "post-copy wanted, first pass still running: asks for post-copy",
      r,
      o({ postcopy: pc, source: status({ memory: mem({ pass: 1 }) }) }),
      { kind: "start-postcopy", progress: "memory", ms: 200 },
    ],
    [
      "post-copy wanted, before the first pass: waits",
      r,
      o({ postcopy: pc, source: status({ memory: mem({ pass: 0 }) }) }),
      { kind: "wait", ms: 200, progress: "memory" },
    ],
    [
      "post-copy already asked for: waits",
      r,
      o({ postcopy: { wanted: true, asked: true }, source: status({ memory: mem({ pass: 2 }) }) }),
      { kind: "wait", ms: 200, progress: "memory" },
    ],
    [
      "post-copy wanted, QEMU past active: converged",
      r,
      o({ postcopy: pc, source: status({ memory: mem({ status: "pre-switchover", pass: 2 }) }) }),
      {
        kind: "mark",
        to: "switching-over",
        reason: "memory converged; the source is paused",
        result: { baseImageCopied: false },
        progress: "memory",
        next: "converged",
      },
    ],
    [
      "converged with a mirror: records the switch-over with the mirror's final size",
      r,
      o({
        baseImageCopied: true,
        source: status({
          mirror: mirror({ ready: true, len: 65536 }),
          memory: mem({ status: "pre-switchover" }),
        }),
      }),
      {
        kind: "mark",
        to: "switching-over",
        reason: "memory converged; the source is paused",
        result: { baseImageCopied: true, diskBytes: 65536 },
        progress: "memory",
        next: "converged",
      },
    ],
    ...(["pre-switchover", "device", "completed"] as const).map(
      (st): Case => [
        `memory ${st}: records the switch-over`,
        r,
        o({ baseImageCopied: true, source: status({ memory: mem({ status: st }) }) }),
        {
          kind: "mark",
          to: "switching-over",
          reason: "memory converged; the source is paused",
          result: { baseImageCopied: true },
          progress: "memory",
          next: "converged",
        },
      ],
    ),
  ]);
});

describe("migration plan: switching over", () => {
  const r = rec("switching-over");
  const o = (over: Partial<Observations>) => obs({ step: "switching-over", ...over });
  table([
    [
      "converged: asks the source to switch over",
      r,
      obs({ step: "converged" }),
      { kind: "start-switchover", next: "switching-over" },
    ],
    ["nothing known yet: polls", r, o({}), { kind: "poll" }],
    ["cancel requested: ignored, polls", r, o({ cancelRequested: true }), { kind: "poll" }],
    [
      "deadline passed: ignored, polls",
      r,
      o({ deadline: { passed: true, timeoutSeconds: 600 } }),
      { kind: "poll" },
    ],
    [
      "server shutting down: left for the next server",
      r,
      o({ shuttingDown: true }),
      { kind: "retry-later", reason: "the server is shutting down" },
    ],
    [
      "source unreachable: retried later, never rolled back blind",
      r,
      o({ source: unreachable(0) }),
      { kind: "retry-later", reason: "source src is unreachable" },
    ],
    [
      "source QEMU gone: rolled back",
      r,
      o({ source: status({ vmStatus: "absent" }) }),
      failed("the source QEMU on src is gone"),
    ],
    [
      "mirror error: rolled back",
      r,
      o({ source: status({ mirror: mirror({ error: "EIO" }) }) }),
      failed("disk mirror failed: EIO"),
    ],
    [
      "memory failed: rolled back",
      r,
      o({ source: status({ memory: mem({ status: "failed" }) }) }),
      failed("memory transfer failed"),
    ],
    [
      "device state still going: saves progress and waits",
      r,
      o({ source: status({ memory: mem({ status: "device" }) }) }),
      { kind: "wait", ms: 200, progress: "switch-over" },
    ],
    [
      "memory completed: asks the target to run the VM",
      r,
      o({ source: status({ memory: mem({ status: "completed" }) }) }),
      { kind: "confirm", progress: "switch-over", next: "confirmed" },
    ],
    [
      "post-copy active: asks the target to run the VM",
      r,
      o({ source: status({ memory: mem({ status: "postcopy-active" }) }) }),
      { kind: "confirm", progress: "switch-over", next: "confirmed" },
    ],
  ]);
});

describe("migration plan: after the target was asked to run the VM", () => {
  const r = rec("switching-over");
  const done = mem({
    status: "completed",
    transferredBytes: 5000,
    totalTimeMs: 900,
    downtimeMs: 40,
    downtimeBreakdown: { stopMs: 1, mirrorFinishMs: 2, finalMs: 37 },
  });
  const handedOver: AgentOutgoingStatus = { vmStatus: "postmigrate", mirror: null, memory: done };
  const inPostcopy: AgentOutgoingStatus = {
    vmStatus: "running",
    mirror: null,
    memory: mem({ status: "postcopy-active" }),
  };
  const running = { state: "running", reason: "" };
  const o = (over: Partial<Observations>) => obs({ step: "confirmed", target: running, ...over });
  table([
    [
      "target refused: rolled back with its reason",
      r,
      o({ handedOver, target: { state: "failed", reason: "QEMU exited" } }),
      failed("the target did not resume the VM: QEMU exited"),
    ],
    [
      "target not running without a reason: rolled back with its state",
      r,
      o({ handedOver, target: { state: "paused", reason: "" } }),
      failed("the target did not resume the VM: paused"),
    ],
    [
      "target runs it after pre-copy: completed with QEMU's figures",
      r,
      o({ handedOver }),
      {
        kind: "complete",
        result: {
          totalTimeMs: 900,
          downtimeMs: 40,
          downtimeBreakdown: done.downtimeBreakdown,
          memoryBytes: 5000,
        },
      },
    ],
    [
      "target runs it and says when it resumed: the guest's pause from the source's stop",
      r,
      o({
        handedOver: { ...handedOver, memory: { ...done, stoppedAt: 10_000 } },
        target: { ...running, resumedAt: 10_312.4 },
      }),
      {
        kind: "complete",
        result: {
          totalTimeMs: 900,
          downtimeMs: 40,
          downtimeBreakdown: done.downtimeBreakdown,
          guestPauseMs: 312,
          memoryBytes: 5000,
        },
      },
    ],
    [
      "target's clock behind the source's by more than the pause: no pause reported",
      r,
      o({
        handedOver: { ...handedOver, memory: { ...done, stoppedAt: 10_000 } },
        target: { ...running, resumedAt: 9_000 },
      }),
      {
        kind: "complete",
        result: {
          totalTimeMs: 900,
          downtimeMs: 40,
          downtimeBreakdown: done.downtimeBreakdown,
          memoryBytes: 5000,
        },
      },
    ],
    [
      "target runs it, status without memory: completed with zero bytes",
      r,
      o({ handedOver: { vmStatus: "postmigrate", mirror: null, memory: null } }),
      { kind: "complete", result: { memoryBytes: 0 } },
    ],
    [
      "target refused in post-copy: rolled back",
      r,
      o({ handedOver: inPostcopy, target: { state: "failed", reason: "no" } }),
      failed("the target did not resume the VM: no"),
    ],
    ["post-copy: polls for the last page", r, o({ handedOver: inPostcopy }), { kind: "poll" }],
    [
      "post-copy, cancel requested: ignored",
      r,
      o({ handedOver: inPostcopy, cancelRequested: true }),
      { kind: "poll" },
    ],
    [
      "post-copy, server shutting down: left for later",
      r,
      o({ handedOver: inPostcopy, shuttingDown: true }),
      { kind: "retry-later", reason: "the server is shutting down" },
    ],
    [
      "post-copy, source unreachable: retried later",
      r,
      o({ handedOver: inPostcopy, source: unreachable(1) }),
      { kind: "retry-later", reason: "source src is unreachable" },
    ],
    [
      "post-copy running: saves progress and waits",
      r,
      o({ handedOver: inPostcopy, source: status({ memory: mem({ status: "postcopy-active" }) }) }),
      { kind: "wait", ms: 200, progress: "post-copy" },
    ],
    [
      "post-copy source gone: the VM is lost",
      r,
      o({ handedOver: inPostcopy, source: status({ vmStatus: "absent" }) }),
      lost("the source QEMU on src is gone"),
    ],
    [
      "post-copy failed: the VM is lost",
      r,
      o({
        handedOver: inPostcopy,
        source: status({ memory: mem({ status: "failed", errorDesc: "broken pipe" }) }),
      }),
      lost("memory transfer failed: broken pipe"),
    ],
    [
      "post-copy done: completed with the final figures",
      r,
      o({ handedOver: inPostcopy, source: status({ memory: done }) }),
      {
        kind: "complete",
        result: {
          totalTimeMs: 900,
          downtimeMs: 40,
          downtimeBreakdown: done.downtimeBreakdown,
          memoryBytes: 5000,
        },
        progress: "post-copy",
      },
    ],
  ]);

  it("refuses a confirmed step without the target's answer", () => {
    expect(() => nextAction(r, obs({ step: "confirmed", handedOver }), policy)).toThrow(/target's answer/);
  });
});

describe("migration plan: an action threw", () => {
  const f = (action: MigrationAction["kind"] | "observe", unreachable = false): Observations["failure"] => ({
    action,
    message: "boom",
    unreachable,
  });
  table([
    ["marking preparing failed: rolled back", rec("queued"), obs({ failure: f("mark") }), failed("boom")],
    [
      "checking the image's hosts failed: rolled back",
      rec("preparing"),
      obs({ step: "preparing", failure: f("observe") }),
      failed("boom"),
    ],
    [
      "reading the cancel flag failed while mirroring: rolled back",
      rec("transferring"),
      obs({ step: "mirroring", failure: f("observe") }),
      failed("boom"),
    ],
    [
      "copying the image failed: rolled back",
      rec("preparing"),
      obs({ step: "preparing", failure: f("copy-image") }),
      failed("boom"),
    ],
    [
      "target unreachable while preparing: rolled back",
      rec("preparing"),
      obs({ step: "image-ready", failure: f("prepare-target", true) }),
      failed("boom"),
    ],
    [
      "starting the mirror failed: rolled back",
      rec("transferring"),
      obs({ step: "target-ready", failure: f("start-mirror", true) }),
      failed("boom"),
    ],
    [
      "starting memory failed: rolled back",
      rec("transferring"),
      obs({ step: "mirror-synced", failure: f("start-memory") }),
      failed("boom"),
    ],
    [
      "a poll failed while mirroring: rolled back",
      rec("transferring"),
      obs({ step: "mirroring", failure: f("poll") }),
      failed("boom"),
    ],
    [
      "saving progress failed while copying memory: rolled back",
      rec("transferring"),
      obs({ step: "copying-memory", failure: f("wait") }),
      failed("boom"),
    ],
    [
      "source unreachable at switch-over: retried later",
      rec("switching-over"),
      obs({ step: "picked-up", failure: f("start-switchover", true) }),
      { kind: "retry-later", reason: "source src is unreachable" },
    ],
    [
      "source refused the switch-over: rolled back",
      rec("switching-over"),
      obs({ step: "converged", failure: f("start-switchover") }),
      failed("boom"),
    ],
    [
      "a poll failed during switch-over: rolled back",
      rec("switching-over"),
      obs({ step: "switching-over", failure: f("poll") }),
      failed("boom"),
    ],
    [
      "target unreachable when asked to run the VM: retried later",
      rec("switching-over"),
      obs({ step: "switching-over", failure: f("confirm", true) }),
      { kind: "retry-later", reason: "target dst is unreachable" },
    ],
    [
      "target refused to run the VM: rolled back",
      rec("switching-over"),
      obs({ step: "switching-over", failure: f("confirm") }),
      failed("boom"),
    ],
    [
      "a poll failed in post-copy: the VM is lost",
      rec("switching-over"),
      obs({ step: "confirmed", failure: f("poll") }),
      lost("boom"),
    ],
    [
      "saving progress failed in post-copy: the VM is lost",
      rec("switching-over"),
      obs({ step: "confirmed", failure: f("wait") }),
      lost("boom"),
    ],
    [
      "recording the completion failed: rolled back",
      rec("switching-over"),
      obs({ step: "confirmed", failure: f("complete") }),
      failed("boom"),
    ],
  ]);
});

describe("what the source moved", () => {
  it("adds the disk mirror's offset and the memory QEMU sent, either absent counting 0", () => {
    const st = (over: Partial<AgentOutgoingStatus>): AgentOutgoingStatus => ({
      vmStatus: "running",
      mirror: null,
      memory: null,
      ...over,
    });
    expect(movedBytes(st({}))).toBe(0);
    expect(movedBytes(st({ mirror: mirror({ offset: 4096 }) }))).toBe(4096);
    expect(movedBytes(st({ memory: mem({ transferredBytes: 400 }) }))).toBe(400);
    expect(movedBytes(st({ mirror: mirror({ offset: 4096 }), memory: mem({ transferredBytes: 400 }) }))).toBe(
      4496,
    );
  });

  it("measures a stall from the last growth of 256 KiB, or from a count that went down", () => {
    const first = nextMovedMark(undefined, 1000, 10);
    expect(first).toEqual({ bytes: 1000, at: 10 });
    // A trickle below the step keeps the mark: the stall goes on.
    expect(nextMovedMark(first, 1000 + STALL_MIN_BYTES - 1, 20)).toBe(first);
    expect(nextMovedMark(first, 1000 + STALL_MIN_BYTES, 30)).toEqual({
      bytes: 1000 + STALL_MIN_BYTES,
      at: 30,
    });
    expect(nextMovedMark(first, 999, 40)).toEqual({ bytes: 999, at: 40 });
  });
});
