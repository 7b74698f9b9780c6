/**
 * What each side of a hand-off does next (docs/federation.md §10), decided from its stored
 * record and what its executor observed. Pure, so every case is unit-tested; the model in
 * spec/acp.pml follows the same tables.
 *
 * Source (nextOutgoingAction), per state:
 *   preparing     deliver `prepare` until answered: `prepared` → transferring; a refusal or
 *                 `aborted` → aborting. A quarantined or removed peer → aborting.
 *   transferring  the migration run carries memory and disk; with no run alive (the server
 *                 restarted mid-transfer) or the peer quarantined or removed → aborting.
 *                 Releasing is the run's decision (the source QEMU sent everything), not
 *                 this planner's.
 *   released      fence the source copy first (its agent learns the destination's token),
 *                 then deliver `release` until answered: `owned` → completed, `returned`
 *                 → reclaimed. A quarantined or removed peer: wait for an operator; never
 *                 take the VM back.
 *   completed     remove the source copy (once).
 *   reclaimed     resume the source copy with the new epoch's token (once).
 *   aborting      make sure the source copy runs, then deliver `abort` until `aborted`; a
 *                 removed or quarantined peer ends it aborted (its copy never runs without
 *                 our release).
 *
 * Destination: decideDelivery answers a statement the source delivered; nextIncomingAction
 * performs what the stored state calls for and asks the source for `status` while it waits:
 *   prepared      ask the source for its decision; apply a `release` or `abort` it shows.
 *   resuming      resume the copy; once it runs → owned (signs `owned`); gone before it
 *                 ran → returned (the source still holds its paused copy).
 *   returned, aborted   remove the copy.
 */
import type { SignedStatement, StatementKind } from "../../api/types/acp.js";
import type { IncomingHandoff, OutgoingHandoff } from "../../cluster/store/acp.js";
import type { PeerState } from "../../states/peer.js";

/** What a request to the peer got back, as the executor saw it. */
export type PeerAnswer =
  | { kind: "statement"; statement: SignedStatement }
  | { kind: "pending" }
  | { kind: "unknown" }
  /** A refusal with a stable code (nothing recorded on the other side). */
  | { kind: "refused"; code: string; message: string }
  /** No answer: the link is down, the peer's server or database is. */
  | { kind: "unreachable"; message: string };

/** A copy of the VM on one of this cluster's hosts, as its agent reports it. */
export type CopyState =
  /** QEMU runs the guest. */
  | "running"
  /** QEMU holds the whole VM, paused (a source after a completed transfer, or a destination whose incoming stream completed). */
  | "paused"
  /** A destination QEMU still waiting for, or receiving, the stream. */
  | "incomplete"
  /** No QEMU for it on the host. */
  | "gone"
  /** The agent did not answer. */
  | "unknown";

export interface OutgoingObservations {
  peer: PeerState;
  /** The answer to the last request this run made, if it has not been acted on. */
  answer?: PeerAnswer;
  /** The source copy, when the state needs it (released, completed, reclaimed, aborting). */
  sourceCopy?: CopyState;
  /** The source agent holds the destination's token (released). */
  sourceFenced?: boolean;
  /** A migration run of this server is carrying the transfer (transferring). */
  transferActive?: boolean;
}

export type OutgoingAction =
  | { kind: "deliver"; statement: StatementKind }
  | { kind: "transition"; to: OutgoingHandoff["state"]; reason: string; keep?: SignedStatement }
  | { kind: "fence-source" }
  | { kind: "remove-source-copy" }
  | { kind: "resume-source" }
  /** Ask the source agent how its copy is. */
  | { kind: "observe-source" }
  /** Nothing to do until the peer answers or the run changes something. */
  | { kind: "wait"; reason: string }
  /** An operator must decide; safe to wait in. */
  | { kind: "needs-decision"; reason: string }
  | { kind: "done" };

/** The statement `answer` carries when it is of `kind`. */
function answered(answer: PeerAnswer | undefined, ...kinds: StatementKind[]): SignedStatement | undefined {
  return answer?.kind === "statement" && kinds.includes(answer.statement.kind) ? answer.statement : undefined;
}

function peerGone(peer: PeerState): string | undefined {
  if (peer === "quarantined") return "the destination cluster is quarantined";
  if (peer === "removed") return "the destination cluster was removed";
  return undefined;
}

export function nextOutgoingAction(h: OutgoingHandoff, o: OutgoingObservations): OutgoingAction {
  const gone = peerGone(o.peer);
  switch (h.state) {
    case "preparing": {
      if (gone) return { kind: "transition", to: "aborting", reason: `${gone} before it prepared` };
      const prepared = answered(o.answer, "prepared");
      if (prepared)
        return {
          kind: "transition",
          to: "transferring",
          reason: "the destination prepared a paused copy",
          keep: prepared,
        };
      if (answered(o.answer, "aborted"))
        return {
          kind: "transition",
          to: "aborting",
          reason: "the destination has this hand-off called off already",
        };
      if (o.answer?.kind === "refused")
        return { kind: "transition", to: "aborting", reason: `the destination refused: ${o.answer.message}` };
      return o.answer ? waitOrDeliver(o.answer, "prepare") : { kind: "deliver", statement: "prepare" };
    }
    case "transferring":
      if (gone) return { kind: "transition", to: "aborting", reason: `${gone} during the transfer` };
      if (!o.transferActive)
        return {
          kind: "transition",
          to: "aborting",
          reason: "no transfer is running (the server restarted mid-transfer)",
        };
      return { kind: "wait", reason: "memory and disk are crossing" };
    case "released": {
      if (o.sourceFenced !== true) return { kind: "fence-source" };
      const owned = answered(o.answer, "owned");
      if (owned)
        return {
          kind: "transition",
          to: "completed",
          reason: "the destination owns and runs the VM",
          keep: owned,
        };
      const returned = answered(o.answer, "returned");
      if (returned)
        return {
          kind: "transition",
          to: "reclaimed",
          reason: `the destination signed the VM back: ${typeof returned.detail?.reason === "string" ? returned.detail.reason.slice(0, 500) : "its copy could not run it"}`,
          keep: returned,
        };
      if (gone)
        return {
          kind: "needs-decision",
          reason: `${gone} after the VM was released to it: the VM stays paused here and cannot be taken back without the destination's word`,
        };
      if (o.answer?.kind === "refused" && o.answer.code === "NOVA_HOST_UNREACHABLE")
        return { kind: "wait", reason: `the destination cannot reach its copy yet: ${o.answer.message}` };
      if (
        o.answer?.kind === "refused" ||
        o.answer?.kind === "unknown" ||
        answered(o.answer, "aborted", "prepared")
      )
        return {
          kind: "needs-decision",
          reason: `the destination does not acknowledge the release (${describe(o.answer)}): the VM stays paused here`,
        };
      return o.answer ? waitOrDeliver(o.answer, "release") : { kind: "deliver", statement: "release" };
    }
    case "completed":
      if (o.sourceCopy === undefined || o.sourceCopy === "unknown") return { kind: "observe-source" };
      return o.sourceCopy === "gone" ? { kind: "done" } : { kind: "remove-source-copy" };
    case "reclaimed":
      if (o.sourceCopy === undefined || o.sourceCopy === "unknown") return { kind: "observe-source" };
      if (o.sourceCopy === "running") return { kind: "done" };
      if (o.sourceCopy === "paused") return { kind: "resume-source" };
      return {
        kind: "needs-decision",
        reason: "the VM was given back but the source copy is gone too: it is lost",
      };
    case "aborting": {
      if (o.sourceCopy === undefined || o.sourceCopy === "unknown") return { kind: "observe-source" };
      if (o.sourceCopy === "paused") return { kind: "resume-source" };
      const aborted = answered(o.answer, "aborted");
      if (aborted)
        return {
          kind: "transition",
          to: "aborted",
          reason: "the destination dropped its copy",
          keep: aborted,
        };
      if (gone)
        return {
          kind: "transition",
          to: "aborted",
          reason: `${gone}; its copy, if any, never runs without our release`,
        };
      if (answered(o.answer, "owned", "returned"))
        return {
          kind: "needs-decision",
          reason: "the destination claims a release this cluster never signed",
        };
      return o.answer ? waitOrDeliver(o.answer, "abort") : { kind: "deliver", statement: "abort" };
    }
    case "aborted":
      return { kind: "done" };
  }
}

/** After an answer that settles nothing: retry now, or on the next pass when the peer is busy or away. */
function waitOrDeliver(answer: PeerAnswer, statement: StatementKind): OutgoingAction {
  if (answer.kind === "unreachable")
    return { kind: "wait", reason: `the destination is unreachable: ${answer.message}` };
  if (answer.kind === "pending")
    return { kind: "wait", reason: "the destination has not finished its step yet" };
  return { kind: "deliver", statement };
}

function describe(a: PeerAnswer | undefined): string {
  if (!a) return "no answer";
  if (a.kind === "statement") return `it answered ${a.statement.kind}`;
  if (a.kind === "refused") return `${a.code}: ${a.message}`;
  if (a.kind === "unreachable") return a.message;
  return a.kind;
}

/** What the destination does with a statement the source delivered. */
export type DeliveryDecision =
  /** Record a new hand-off (prepare → prepared, with a copy to start; abort → aborted). */
  | { kind: "create"; state: "prepared" | "aborted"; reason: string; startCopy: boolean }
  | { kind: "transition"; to: IncomingHandoff["state"]; reason: string }
  /** Nothing changes; answer with the statement already made (a repeated delivery). */
  | { kind: "repeat" }
  /**
   * A repeated prepare whose copy is gone, or whose `prepared` was never recorded (the
   * database failed after the copy started): start the copy (again; the agent's prepare
   * is idempotent per hand-off) and answer prepared.
   */
  | { kind: "restart-copy" }
  /** Refuse: the source contradicts itself (evidence), or asks for what cannot be. */
  | {
      kind: "refuse";
      code: "NOVA_ACP_ABORTED" | "NOVA_ACP_PROTOCOL" | "NOVA_HOST_UNREACHABLE";
      reason: string;
      equivocation: boolean;
    };

/**
 * The destination's answer to a delivered statement, given its record of the hand-off
 * (undefined: none) and its copy. `owned` only with a copy that received the whole VM.
 */
export function decideDelivery(
  h: IncomingHandoff | undefined,
  kind: "prepare" | "release" | "abort",
  copy: CopyState,
): DeliveryDecision {
  if (!h) {
    if (kind === "prepare")
      return { kind: "create", state: "prepared", reason: "a paused copy waits for the VM", startCopy: true };
    if (kind === "abort")
      return {
        kind: "create",
        state: "aborted",
        reason: "called off before it was prepared here",
        startCopy: false,
      };
    return {
      kind: "refuse",
      code: "NOVA_ACP_PROTOCOL",
      reason: "a release of a hand-off this cluster never prepared",
      equivocation: false,
    };
  }
  switch (h.state) {
    case "prepared":
      if (kind === "prepare")
        return copy === "gone" || !h.statements.prepared ? { kind: "restart-copy" } : { kind: "repeat" };
      if (kind === "abort") return { kind: "transition", to: "aborted", reason: "the source called it off" };
      if (copy === "paused")
        return { kind: "transition", to: "resuming", reason: "released to this cluster" };
      if (copy === "unknown")
        // The agent did not say: answering either way could be wrong. The source repeats.
        return {
          kind: "refuse",
          code: "NOVA_HOST_UNREACHABLE",
          reason: "the copy's agent did not answer; try again",
          equivocation: false,
        };
      return {
        kind: "transition",
        to: "returned",
        reason:
          copy === "incomplete"
            ? "released, but this copy never received the whole VM"
            : "released, but this copy is gone",
      };
    case "resuming":
    case "owned":
    case "returned":
      if (kind === "release") return { kind: "repeat" };
      if (kind === "prepare") return { kind: "repeat" };
      return {
        kind: "refuse",
        code: "NOVA_ACP_PROTOCOL",
        reason: "an abort after the source released the VM",
        equivocation: true,
      };
    case "aborted":
      if (kind === "abort") return { kind: "repeat" };
      if (kind === "prepare")
        return {
          kind: "refuse",
          code: "NOVA_ACP_ABORTED",
          reason: "the hand-off was called off",
          equivocation: false,
        };
      return {
        kind: "refuse",
        code: "NOVA_ACP_PROTOCOL",
        reason: "a release after the source called the hand-off off",
        equivocation: true,
      };
  }
}

export interface IncomingObservations {
  peer: PeerState;
  /** The copy on this cluster's host. */
  copy: CopyState;
  /** The source's answer to this run's last status request. */
  answer?: PeerAnswer;
}

export type IncomingAction =
  /** Act on the source's decision as if it had been delivered. */
  | { kind: "apply"; statement: SignedStatement }
  | { kind: "transition"; to: "owned" | "returned"; reason: string }
  | { kind: "ask-status" }
  | { kind: "resume-copy" }
  | { kind: "remove-copy" }
  | { kind: "wait"; reason: string }
  | { kind: "needs-decision"; reason: string }
  | { kind: "done" };

export function nextIncomingAction(h: IncomingHandoff, o: IncomingObservations): IncomingAction {
  switch (h.state) {
    case "prepared": {
      const decided = answered(o.answer, "release", "abort");
      if (decided) return { kind: "apply", statement: decided };
      if (o.peer !== "active")
        return {
          kind: "needs-decision",
          reason: `the source cluster is ${o.peer}: its copy runs or it released the VM here, and only its word tells which`,
        };
      if (o.answer?.kind === "unknown")
        return {
          kind: "needs-decision",
          reason: "the source has no record of this hand-off (was its database restored?)",
        };
      if (o.answer?.kind === "pending") return { kind: "wait", reason: "the source has not decided yet" };
      if (o.answer?.kind === "unreachable")
        return { kind: "wait", reason: `the source is unreachable: ${o.answer.message}` };
      return { kind: "ask-status" };
    }
    case "resuming":
      if (o.copy === "paused") return { kind: "resume-copy" };
      if (o.copy === "running") return { kind: "transition", to: "owned", reason: "its copy runs here" };
      if (o.copy === "unknown") return { kind: "wait", reason: "the copy's agent does not answer" };
      // Gone before it ever ran (`owned` is signed only once it runs, so the source still
      // holds its paused copy): give the VM back rather than lose it.
      return {
        kind: "transition",
        to: "returned",
        reason: "this copy died before it ran; the VM goes back to the source",
      };
    case "owned":
      // From here on the VM's lifecycle is the reconciler's.
      return { kind: "done" };
    case "returned":
    case "aborted":
      if (o.copy === "gone") return { kind: "done" };
      if (o.copy === "unknown") return { kind: "wait", reason: "the copy's agent does not answer" };
      return { kind: "remove-copy" };
  }
}
