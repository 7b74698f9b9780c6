/**
 * ACP, the running hand-offs of this cluster (docs/federation.md §10): answers the acp/1
 * requests of peers (as destination, and the source's `status`), starts, releases and
 * aborts hand-offs for the migrations that move VMs out, and runs one loop that takes
 * every unfinished hand-off of either side one step further with the pure planner
 * (plan.ts), through the copies' ports (ports.ts) and the peers' clients.
 *
 * Every decision reads the stored record; every move is one transaction with the
 * statement it rests on; every side effect comes after the commit and is idempotent. So a
 * restart of the server, its database or an agent loses nothing: the loop finds the
 * record where the last commit left it and does what it says.
 */

import type { KeyObject } from "node:crypto";
import { Value } from "@sinclair/typebox/value";
import type { Logger } from "pino";
import {
  type AcpAnswer,
  type AcpRequest,
  HandoffVmSpec,
  type SignedStatement,
  type StatementKind,
} from "../../api/types/acp.js";
import { ResourceName } from "../../api/types/common.js";
import type { ClusterEvent } from "../../api/types/events.js";
import {
  arrivedVmRuns,
  assertVmCanArrive,
  createIncoming,
  createOutgoing,
  dropArrivingVm,
  dropReleasedVm,
  findIncoming,
  findOutgoing,
  type IncomingHandoff,
  insertArrivingVm,
  listUnsettledIncoming,
  listUnsettledOutgoing,
  moveVmOwnership,
  type OutgoingHandoff,
  type Statements,
  settleHandoff,
  takeArrivingVm,
  transitionIncoming,
  transitionOutgoing,
} from "../../cluster/store/acp.js";
import type { Queryable } from "../../cluster/store/db.js";
import { appendEvent } from "../../cluster/store/events.js";
import { addEvidence, type PeerRow, transitionPeer } from "../../cluster/store/federation.js";
import type { Store } from "../../cluster/store/store.js";
import { describeError, isNovaError, NovaError } from "../../lib/errors.js";
import { failpoint } from "../../lib/failpoints.js";
import { WakeableLoop } from "../../lib/wakeable-loop.js";
import { publicKeyFromRaw } from "../records.js";
import type { AcpClient } from "./acp-client.js";
import { type AcpMetrics, requestLabel } from "./metrics.js";
import {
  type CopyState,
  decideDelivery,
  nextIncomingAction,
  nextOutgoingAction,
  type OutgoingObservations,
  type PeerAnswer,
} from "./plan.js";
import type { SourceCopies, TargetCopies } from "./ports.js";
import { RunnerGrace } from "./runner-grace.js";
import {
  contradicts,
  type StatementContent,
  signerOf,
  signStatement,
  verifyStatement,
} from "./statements.js";

export interface AcpDeps {
  store: Store;
  self: { id: string; name: string };
  signingKey: KeyObject;
  /** Live peers (not removed). */
  peers: () => Promise<PeerRow[]>;
  /** The request client of a peer. */
  client: (peerId: string) => AcpClient;
  source: SourceCopies;
  target: TargetCopies;
  /** True while a migration run of this server carries the hand-off's transfer. */
  transferActive: (handoffId: string) => boolean;
  log: Logger;
  /** Counts the requests answered and the transactions committed (metrics.ts). */
  metrics?: AcpMetrics;
  /** Pause between passes when nothing wakes the loop. */
  passMs?: number;
}

/** Which side of a hand-off this cluster is. */
type Side = "source" | "destination";

/**
 * How long a transferring hand-off may be without its migration runner before it is
 * called off: longer than the scheduler's hand-back and rerun of a waiting migration.
 */
const RUNNER_GRACE_MS = 10_000;

/** How long a release waits for the destination's copy to finish loading the stream. */
const RELEASE_LOAD_WAIT_MS = 20_000;

/** Steps one hand-off may take in one pass before the loop moves on to the next. */
const MAX_STEPS_PER_PASS = 8;

/** The epoch a statement of this kind names, for a hand-off from epoch e. */
function epochOf(kind: StatementKind, fromEpoch: number): number {
  return kind === "returned" ? fromEpoch + 2 : fromEpoch + 1;
}

export class AcpService {
  private readonly loop: WakeableLoop;
  /** Source copies fenced by this process (fencing is idempotent; after a restart it is redone). */
  private readonly fenced = new Set<string>();
  /** Whether each transferring hand-off still has its migration runner, with a grace. */
  private readonly runners = new RunnerGrace(RUNNER_GRACE_MS);
  /** Hand-offs waiting for an operator, with why: shown by the API, logged once. */
  private readonly decisions = new Map<string, string>();
  /** When each preparing hand-off's destination last answered `pending` (copying the image). */
  private readonly pendingAt = new Map<string, number>();

  constructor(private readonly d: AcpDeps) {
    this.loop = new WakeableLoop({
      pass: () => this.pass(),
      intervalMs: d.passMs ?? 2000,
      onError: (err) => d.log.warn({ err: describeError(err) }, "hand-off pass failed"),
    });
  }

  start(): void {
    this.loop.start();
  }

  async stop(): Promise<void> {
    await this.loop.stop();
  }

  /** Runs a pass soon (a transfer finished, a peer came back). */
  wake(): void {
    this.loop.wake();
  }

  /** Records (and logs once) that only an operator can move `h` on, and why. */
  private noteDecision(h: { id: string; vmName: string }, reason: string): void {
    if (this.decisions.get(h.id) !== reason)
      this.d.log.warn({ handoff: h.id, vm: h.vmName, reason }, "hand-off needs an operator");
    this.decisions.set(h.id, reason);
  }

  /** When the destination of preparing hand-off `id` last answered `pending`, if it did. */
  lastPendingAt(handoffId: string): number | undefined {
    return this.pendingAt.get(handoffId);
  }

  /** Why a hand-off waits for an operator, if it does. */
  needsDecision(handoffId: string): string | null {
    return this.decisions.get(handoffId) ?? null;
  }

  private sign(c: Omit<StatementContent, "issuedAt">): SignedStatement {
    return signStatement({ ...c, issuedAt: new Date().toISOString() }, this.d.signingKey);
  }

  /** One transaction of a hand-off's `side`, counted once it committed. */
  private async commit<T>(
    side: Side,
    fn: (tx: Queryable, emit: (event: ClusterEvent) => void) => Promise<T>,
  ): Promise<T> {
    const result = await this.d.store.write(fn);
    this.d.metrics?.commits.inc({ side });
    return result;
  }

  // ── source side ────────────────────────────────────────────────────────────────────

  /**
   * Starts handing VM `vm` (owned here at `fromEpoch`) to `target`: records `preparing`
   * with the signed `prepare`. The loop delivers it.
   */
  async propose(p: {
    id: string;
    vm: { id: string; name: string };
    migrationId: string | null;
    target: PeerRow;
    fromEpoch: number;
    spec: HandoffVmSpec;
  }): Promise<OutgoingHandoff> {
    if (p.target.state !== "active")
      throw new NovaError(
        "NOVA_FED_QUARANTINED",
        `${p.target.name} is quarantined (${p.target.quarantineReason}); no VM is handed to it`,
      );
    const prepare = this.sign({
      kind: "prepare",
      handoff: p.id,
      vm: p.vm.id,
      source: this.d.self.id,
      target: p.target.id,
      epoch: p.fromEpoch + 1,
      detail: p.spec,
    });
    await this.commit("source", async (tx, emit) => {
      emit(
        await createOutgoing(tx, {
          id: p.id,
          vmId: p.vm.id,
          vmName: p.vm.name,
          migrationId: p.migrationId,
          targetClusterId: p.target.id,
          fromEpoch: p.fromEpoch,
          prepare,
        }),
      );
    });
    failpoint("acp.source.preparing");
    this.wake();
    return (await findOutgoing(this.d.store.read, p.id))!;
  }

  /**
   * The transfer completed and the source copy is paused: the VM becomes the
   * destination's at the next epoch. The one point where ownership moves; after it this
   * cluster never runs the VM unless the destination signs it back.
   */
  async release(handoffId: string): Promise<void> {
    let released = false;
    await this.commit("source", async (tx, emit) => {
      const h = await findOutgoing(tx, handoffId, true);
      if (!h) throw new NovaError("NOVA_NOT_FOUND", `No outgoing hand-off ${handoffId}`);
      if (h.state === "released" || h.state === "completed") return;
      const release = this.sign({
        kind: "release",
        handoff: h.id,
        vm: h.vmId,
        source: this.d.self.id,
        target: h.targetClusterId,
        epoch: h.fromEpoch + 1,
      });
      await moveVmOwnership(
        tx,
        h.vmId,
        { ownerClusterId: null, epoch: h.fromEpoch },
        { ownerClusterId: h.targetClusterId, epoch: h.fromEpoch + 1 },
      );
      emit(await transitionOutgoing(tx, h, "released", "the transfer completed; released", { release }));
      released = true;
    });
    // Only the call that committed it: a rerun migration repeats the release harmlessly.
    if (released) failpoint("acp.source.released");
    this.wake();
  }

  /** Calls a hand-off off before its release; NOVA_ILLEGAL_STATE after it. */
  async abort(handoffId: string, reason: string): Promise<void> {
    await this.commit("source", async (tx, emit) => {
      const h = await findOutgoing(tx, handoffId, true);
      if (!h) throw new NovaError("NOVA_NOT_FOUND", `No outgoing hand-off ${handoffId}`);
      if (h.state === "aborting" || h.state === "aborted") return;
      emit(await this.toAborting(tx, h, reason));
    });
    this.wake();
  }

  private async toAborting(
    tx: Parameters<Parameters<Store["write"]>[0]>[0],
    h: OutgoingHandoff,
    reason: string,
  ) {
    const abort = this.sign({
      kind: "abort",
      handoff: h.id,
      vm: h.vmId,
      source: this.d.self.id,
      target: h.targetClusterId,
      epoch: h.fromEpoch + 1,
      // A destination that never saw the prepare learns the VM's name from here alone.
      detail: { vmName: h.vmName },
    });
    return transitionOutgoing(tx, h, "aborting", reason, { abort });
  }

  // ── the loop ───────────────────────────────────────────────────────────────────────

  private async pass(): Promise<void> {
    const peers = new Map((await this.d.peers()).map((p) => [p.id, p]));
    for (const h of await listUnsettledOutgoing(this.d.store.read)) {
      try {
        await this.stepOutgoing(h, peers.get(h.targetClusterId));
      } catch (err) {
        this.d.log.warn(
          { handoff: h.id, err: describeError(err) },
          "hand-off step failed; retried next pass",
        );
      }
    }
    for (const h of await listUnsettledIncoming(this.d.store.read)) {
      try {
        await this.stepIncoming(h, peers.get(h.sourceClusterId));
      } catch (err) {
        this.d.log.warn(
          { handoff: h.id, err: describeError(err) },
          "hand-off step failed; retried next pass",
        );
      }
    }
  }

  private async stepOutgoing(first: OutgoingHandoff, peer: PeerRow | undefined): Promise<void> {
    let h = first;
    let answer: PeerAnswer | undefined;
    for (let i = 0; i < MAX_STEPS_PER_PASS; i++) {
      const o: OutgoingObservations = {
        peer: peer?.state ?? "removed",
        ...(answer ? { answer } : {}),
        sourceFenced: this.fenced.has(h.id),
        transferActive: h.state !== "transferring" || this.runners.alive(h.id, this.d.transferActive(h.id)),
      };
      if (h.state === "completed" || h.state === "reclaimed" || h.state === "aborting")
        o.sourceCopy = await this.d.source.state(h).catch((): CopyState => "unknown");
      const action = nextOutgoingAction(h, o);
      if (action.kind !== "needs-decision") this.decisions.delete(h.id);
      switch (action.kind) {
        case "deliver": {
          const statement = h.statements[action.statement];
          if (!statement)
            throw new NovaError("NOVA_INTERNAL", `hand-off ${h.id} holds no ${action.statement}`);
          answer = peer
            ? await this.checkAnswer(
                h,
                peer,
                await this.d.client(peer.id).request({ type: "deliver", statement }),
              )
            : { kind: "refused", code: "NOVA_FED_PEER_UNKNOWN", message: "the peer was removed" };
          if (h.state === "preparing" && answer.kind === "pending") this.pendingAt.set(h.id, Date.now());
          else this.pendingAt.delete(h.id);
          continue;
        }
        case "transition":
          this.runners.forget(h.id);
          h = await this.moveOutgoing(h, action.to, action.reason, action.keep);
          answer = undefined;
          continue;
        case "fence-source":
          await this.d.source.fence(h, { owner: h.targetClusterId, epoch: h.fromEpoch + 1 });
          this.fenced.add(h.id);
          continue;
        case "remove-source-copy":
          await this.d.source.remove(h);
          continue;
        case "resume-source":
          await this.d.source.resume(h, {
            owner: this.d.self.id,
            epoch: h.state === "reclaimed" ? h.fromEpoch + 2 : h.fromEpoch,
          });
          continue;
        case "observe-source":
          return; // its agent did not answer: next pass
        case "needs-decision":
          this.noteDecision(h, action.reason);
          return;
        case "done": {
          const { vmId, targetClusterId, state } = h;
          await this.commit("source", async (tx) => {
            // The VM's row goes with the copy; a migration still recording its end keeps
            // it (and the hand-off unsettled) until the next pass.
            if (
              state === "completed" &&
              (await dropReleasedVm(tx, vmId, targetClusterId)) === "migration-active"
            )
              return;
            await settleHandoff(tx, "source", h.id, state);
          });
          return;
        }
        case "wait":
          // Released and the destination is still resuming its copy: the VM is down until
          // it answers, so ask again soon rather than at the next pass.
          if (h.state === "released" && answer?.kind === "pending")
            setTimeout(() => this.wake(), 250).unref();
          return;
      }
    }
  }

  /** An answer's statement is the peer's, about this hand-off, of a kind it may sign. */
  private async checkAnswer(h: OutgoingHandoff, peer: PeerRow, a: PeerAnswer): Promise<PeerAnswer> {
    if (a.kind !== "statement") return a;
    const s = a.statement;
    const problem = this.statementProblem(s, {
      handoff: h.id,
      vm: h.vmId,
      source: this.d.self.id,
      target: peer.id,
      fromEpoch: h.fromEpoch,
      signer: peer,
    });
    if (problem) {
      this.d.log.warn(
        { handoff: h.id, peer: peer.name, problem },
        "the destination's answer is not acceptable",
      );
      return { kind: "refused", code: "NOVA_ACP_PROTOCOL", message: problem };
    }
    const contradicted = Object.values(h.statements).find(
      (held) => held && signerOf(held) === peer.id && contradicts(held, s),
    );
    if (contradicted) {
      await this.quarantine(
        "source",
        peer,
        `signed both ${contradicted.kind} and ${s.kind} for hand-off ${h.id}`,
        [contradicted, s],
      );
      return {
        kind: "refused",
        code: "NOVA_ACP_PROTOCOL",
        message: `the destination contradicted its ${contradicted.kind}`,
      };
    }
    return a;
  }

  private async moveOutgoing(
    h: OutgoingHandoff,
    to: OutgoingHandoff["state"],
    reason: string,
    keep?: SignedStatement,
  ): Promise<OutgoingHandoff> {
    await this.commit("source", async (tx, emit) => {
      const current = await findOutgoing(tx, h.id, true);
      if (!current || current.state !== h.state)
        throw new NovaError("NOVA_STATE_CHANGED", `hand-off ${h.id} moved meanwhile`);
      if (to === "aborting") {
        emit(await this.toAborting(tx, current, reason));
        return;
      }
      const statements: Statements = keep ? { [keep.kind]: keep } : {};
      if (to === "reclaimed")
        await moveVmOwnership(
          tx,
          h.vmId,
          { ownerClusterId: h.targetClusterId, epoch: h.fromEpoch + 1 },
          { ownerClusterId: null, epoch: h.fromEpoch + 2 },
        );
      emit(await transitionOutgoing(tx, current, to, reason, statements));
    });
    failpoint(`acp.source.${to}`);
    return (await findOutgoing(this.d.store.read, h.id))!;
  }

  private async stepIncoming(first: IncomingHandoff, peer: PeerRow | undefined): Promise<void> {
    let h = first;
    let answer: PeerAnswer | undefined;
    /** When this pass resumed the copy, for its `owned`. */
    let resumedAt: number | undefined;
    for (let i = 0; i < MAX_STEPS_PER_PASS; i++) {
      const copy = await this.d.target.state(h).catch((): CopyState => "unknown");
      const action = nextIncomingAction(h, {
        peer: peer?.state ?? "removed",
        copy,
        ...(answer ? { answer } : {}),
      });
      if (action.kind !== "needs-decision") this.decisions.delete(h.id);
      switch (action.kind) {
        case "ask-status":
          answer = peer
            ? await this.d.client(peer.id).request({ type: "status", handoff: h.id })
            : { kind: "unreachable", message: "the source cluster was removed" };
          if (answer.kind === "statement" && peer) {
            const problem = this.statementProblem(answer.statement, {
              handoff: h.id,
              vm: h.vmId,
              source: peer.id,
              target: this.d.self.id,
              fromEpoch: h.fromEpoch,
              signer: peer,
            });
            if (problem) answer = { kind: "refused", code: "NOVA_ACP_PROTOCOL", message: problem };
          }
          continue;
        case "apply": {
          const a = await this.deliver(peer, action.statement);
          if (a.type === "error")
            this.d.log.warn({ handoff: h.id, error: a.message }, "applying the source's word failed");
          h = (await findIncoming(this.d.store.read, h.id)) ?? h;
          answer = undefined;
          if (a.type === "error") return;
          continue;
        }
        case "transition":
          h = await this.moveIncoming(
            h,
            action.to,
            action.reason,
            undefined,
            action.to === "owned" && resumedAt !== undefined ? { resumedAt } : undefined,
          );
          continue;
        case "resume-copy":
          ({ resumedAt } = await this.d.target.resume(h, { owner: this.d.self.id, epoch: h.fromEpoch + 1 }));
          continue;
        case "remove-copy":
          await this.d.target.remove(h);
          continue;
        case "needs-decision":
          this.noteDecision(h, action.reason);
          return;
        case "done":
          await settleHandoff(this.d.store.db, "destination", h.id, h.state);
          this.d.metrics?.commits.inc({ side: "destination" });
          return;
        case "wait":
          return;
      }
    }
  }

  // ── answering peers ───────────────────────────────────────────────────────────────

  /** The acp/1 handler: never throws; a failure is an error answer with a stable code. */
  async answer(peer: PeerRow, request: AcpRequest): Promise<AcpAnswer> {
    this.d.metrics?.requests.inc({ role: "answered", request: requestLabel(request) });
    try {
      if (request.type === "status") return await this.status(peer, request.handoff);
      return await this.deliver(peer, request.statement);
    } catch (err) {
      const code = isNovaError(err) ? err.code : "NOVA_INTERNAL";
      if (code === "NOVA_INTERNAL") this.d.log.error({ err: describeError(err) }, "hand-off request failed");
      return { type: "error", code, message: describeError(err) };
    }
  }

  /** This cluster's newest word on a hand-off, for the peer on its other side. */
  private async status(peer: PeerRow, handoffId: string): Promise<AcpAnswer> {
    const out = await findOutgoing(this.d.store.read, handoffId);
    if (out && out.targetClusterId === peer.id) {
      const s = out.statements.release ?? out.statements.abort;
      return s ? { type: "statement", statement: s } : { type: "pending" };
    }
    const inc = await findIncoming(this.d.store.read, handoffId);
    if (inc && inc.sourceClusterId === peer.id) {
      // While resuming there is nothing to say yet: `owned` is signed once the copy runs.
      const s = inc.state === "resuming" ? undefined : inc.statements[inc.state];
      return s ? { type: "statement", statement: s } : { type: "pending" };
    }
    return { type: "unknown" };
  }

  /** What is wrong with `s` as a statement of this hand-off signed by `signer`, if anything. */
  private statementProblem(
    s: SignedStatement,
    want: {
      handoff: string;
      vm: string;
      source: string;
      target: string;
      fromEpoch: number | undefined;
      signer: PeerRow;
    },
  ): string | undefined {
    if (s.handoff !== want.handoff || s.vm !== want.vm) return "it is about another hand-off or VM";
    if (s.source !== want.source || s.target !== want.target) return "it names other clusters";
    if (signerOf(s) !== want.signer.id) return `${want.signer.name} may not sign a ${s.kind}`;
    if (want.fromEpoch !== undefined && s.epoch !== epochOf(s.kind, want.fromEpoch))
      return `its epoch ${s.epoch} is not the hand-off's ${epochOf(s.kind, want.fromEpoch)}`;
    if (!verifyStatement(s, publicKeyFromRaw(want.signer.signingPublicKey)))
      return `its signature is not ${want.signer.name}'s`;
    return undefined;
  }

  /** The destination's side of a delivered prepare, release or abort (docs/federation.md §10). */
  private async deliver(peer: PeerRow | undefined, s: SignedStatement): Promise<AcpAnswer> {
    if (!peer)
      return { type: "error", code: "NOVA_FED_PEER_UNKNOWN", message: "the source cluster was removed" };
    if (s.kind !== "prepare" && s.kind !== "release" && s.kind !== "abort")
      return {
        type: "error",
        code: "NOVA_ACP_PROTOCOL",
        message: `a ${s.kind} is not delivered to a destination`,
      };
    const existing = await findIncoming(this.d.store.read, s.handoff);
    if (existing && existing.sourceClusterId !== peer.id)
      return {
        type: "error",
        code: "NOVA_ACP_PROTOCOL",
        message: "that hand-off belongs to another cluster",
      };
    const problem = this.statementProblem(s, {
      handoff: s.handoff,
      vm: existing?.vmId ?? s.vm,
      source: peer.id,
      target: this.d.self.id,
      fromEpoch: existing?.fromEpoch ?? s.epoch - 1,
      signer: peer,
    });
    if (problem)
      return { type: "error", code: "NOVA_ACP_PROTOCOL", message: `refused ${s.kind}: ${problem}` };
    let copy: CopyState = existing
      ? await this.d.target.state(existing).catch((): CopyState => "unknown")
      : "gone";
    // The source releases once its QEMU sent the last bytes; this copy may still be
    // loading them. Give it a moment rather than give the VM back for nothing.
    if (existing?.state === "prepared" && s.kind === "release" && copy === "incomplete")
      copy = await this.copyLoaded(existing);
    const decision = decideDelivery(existing, s.kind, copy);
    switch (decision.kind) {
      case "refuse":
        if (decision.equivocation && existing) {
          const held = existing.statements.release ?? existing.statements.abort ?? s;
          await this.quarantine("destination", peer, `${decision.reason} (hand-off ${s.handoff})`, [held, s]);
        }
        return { type: "error", code: decision.code, message: decision.reason };
      case "repeat":
        return this.status(peer, s.handoff);
      case "create":
        if (decision.state === "aborted") return this.recordNeverPrepared(peer, s);
        return this.prepare(peer, s);
      case "restart-copy":
        return this.startCopy(existing!, s);
      case "transition":
        return this.decide(existing!, decision.to, decision.reason, s);
    }
  }

  /** Waits (bounded) for a copy that is receiving its last bytes to hold the whole VM. */
  private async copyLoaded(h: IncomingHandoff): Promise<CopyState> {
    const deadline = Date.now() + RELEASE_LOAD_WAIT_MS;
    for (;;) {
      const copy = await this.d.target.state(h).catch((): CopyState => "unknown");
      if ((copy !== "incomplete" && copy !== "unknown") || Date.now() > deadline) return copy;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  private async recordNeverPrepared(peer: PeerRow, abort: SignedStatement): Promise<AcpAnswer> {
    const aborted = this.sign({ ...idsOf(abort), kind: "aborted", epoch: abort.epoch });
    await this.commit("destination", async (tx, emit) => {
      emit(
        await createIncoming(tx, {
          id: abort.handoff,
          vmId: abort.vm,
          vmName: abortedVmName(abort),
          sourceClusterId: peer.id,
          fromEpoch: abort.epoch - 1,
          state: "aborted",
          reason: "called off before it was prepared here",
          hostId: null,
          statements: { abort, aborted },
        }),
      );
    });
    return { type: "statement", statement: aborted };
  }

  private async prepare(peer: PeerRow, prepare: SignedStatement): Promise<AcpAnswer> {
    if (!Value.Check(HandoffVmSpec, prepare.detail))
      return {
        type: "error",
        code: "NOVA_ACP_PROTOCOL",
        message: "the prepare does not carry a VM this cluster can start",
      };
    const spec = prepare.detail as HandoffVmSpec;
    // The name first: a clash is the more useful refusal than a lack of room, and than
    // copying an image for nothing.
    await assertVmCanArrive(this.d.store.read, prepare.vm, spec.name);
    // A copy of the image takes longer than one request may: the source asks again.
    const image = await this.d.target.ensureImage(prepare.handoff, peer.caPem, spec);
    if (image.kind === "pending") {
      failpoint("acp.destination.image-pending");
      return { type: "pending" };
    }
    await this.commit("destination", async (tx, emit) => {
      await assertVmCanArrive(tx, prepare.vm, spec.name);
      const placement = await this.d.target.place(tx, spec, image.copied);
      for (const e of placement.events ?? []) emit(e);
      emit(
        await insertArrivingVm(tx, {
          id: prepare.vm,
          name: spec.name,
          imageId: placement.imageId,
          vcpus: spec.vcpus,
          memoryMiB: spec.memoryMiB,
          kernelArgs: spec.kernelArgs,
          machineType: spec.machineType ?? null,
          hostId: placement.hostId,
          ownerClusterId: peer.id,
          ownerEpoch: prepare.epoch - 1,
        }),
      );
      emit(
        await createIncoming(tx, {
          id: prepare.handoff,
          vmId: prepare.vm,
          vmName: spec.name,
          sourceClusterId: peer.id,
          fromEpoch: prepare.epoch - 1,
          state: "prepared",
          reason: "a paused copy waits for the VM",
          hostId: placement.hostId,
          statements: { prepare },
        }),
      );
    });
    failpoint("acp.destination.prepared");
    return this.startCopy((await findIncoming(this.d.store.read, prepare.handoff))!, prepare);
  }

  /** Starts the paused copy and answers `prepared` with where the source reaches it. */
  private async startCopy(h: IncomingHandoff, prepare: SignedStatement): Promise<AcpAnswer> {
    const endpoints = await this.d.target.start(h, prepare);
    const prepared = this.sign({
      ...idsOf(prepare),
      kind: "prepared",
      epoch: h.fromEpoch + 1,
      detail: endpoints,
    });
    await this.commit("destination", async (tx) => {
      await tx.query(
        `UPDATE acp_incoming SET statements = statements || jsonb_build_object('prepared', $2::jsonb) WHERE id = $1 AND state = 'prepared'`,
        [h.id, JSON.stringify(prepared)],
      );
    });
    return { type: "statement", statement: prepared };
  }

  /**
   * The source's release or abort moves this side, then answers. A release is answered
   * after the copy was resumed, as the statement says ("owned: runs here"), so the source
   * learns it in this one round trip; when the resume cannot finish now the answer is
   * `pending` and the loop carries on.
   */
  private async decide(
    h: IncomingHandoff,
    to: IncomingHandoff["state"],
    reason: string,
    word: SignedStatement,
  ): Promise<AcpAnswer> {
    let now = await this.moveIncoming(h, to, reason, word);
    if (now.state === "resuming") {
      try {
        const { resumedAt } = await this.d.target.resume(now, {
          owner: this.d.self.id,
          epoch: now.fromEpoch + 1,
        });
        // When the guest ran again goes with `owned`: the source's migration record
        // reports the guest's whole pause from it, as inside a cluster.
        if ((await this.d.target.state(now)) === "running")
          now = await this.moveIncoming(
            now,
            "owned",
            "its copy runs here",
            undefined,
            resumedAt === undefined ? undefined : { resumedAt },
          );
      } catch (err) {
        this.d.log.warn(
          { handoff: h.id, err: describeError(err) },
          "resuming the arrived copy failed; the loop retries",
        );
      }
    }
    this.wake();
    return this.status(await this.peerOf(now), now.id);
  }

  private async peerOf(h: IncomingHandoff): Promise<PeerRow> {
    const peer = (await this.d.peers()).find((p) => p.id === h.sourceClusterId);
    if (!peer) throw new NovaError("NOVA_FED_PEER_UNKNOWN", "the source cluster was removed");
    return peer;
  }

  /**
   * Moves this side (one transaction): resuming takes the VM's ownership; owned, returned
   * and aborted sign the statement that says so; `word` is the source's statement it rests on.
   */
  private async moveIncoming(
    h: IncomingHandoff,
    to: IncomingHandoff["state"],
    reason: string,
    word?: SignedStatement,
    /** What `owned` says besides (when the guest was resumed). */
    detail?: Record<string, unknown>,
  ): Promise<IncomingHandoff> {
    const ids = { handoff: h.id, vm: h.vmId, source: h.sourceClusterId, target: this.d.self.id };
    const statements: Statements = word ? { [word.kind]: word } : {};
    if (to === "owned" || to === "returned" || to === "aborted")
      statements[to] = this.sign({
        ...ids,
        kind: to,
        epoch: epochOf(to, h.fromEpoch),
        // Why it is given back, for the source's operator.
        ...(to === "returned" ? { detail: { reason } } : detail ? { detail } : {}),
      });
    await this.commit("destination", async (tx, emit) => {
      const current = await findIncoming(tx, h.id, true);
      if (!current || current.state !== h.state)
        throw new NovaError("NOVA_STATE_CHANGED", `hand-off ${h.id} moved meanwhile`);
      if (to === "resuming")
        await takeArrivingVm(tx, h.vmId, { ownerClusterId: h.sourceClusterId, epoch: h.fromEpoch });
      else if (to === "owned")
        emit(await arrivedVmRuns(tx, h.vmId, `arrived from another cluster: ${reason}`));
      else {
        const dropped = await dropArrivingVm(tx, h.vmId, reason);
        if (dropped) emit(dropped);
      }
      emit(await transitionIncoming(tx, current, to, reason, statements));
    });
    failpoint(`acp.destination.${to}`);
    return (await findIncoming(this.d.store.read, h.id))!;
  }

  /** Stores the proof and quarantines a peer that contradicted itself. */
  private async quarantine(
    side: Side,
    peer: PeerRow,
    detail: string,
    proof: SignedStatement[],
  ): Promise<void> {
    await this.commit(side, async (tx, emit) => {
      await addEvidence(tx, {
        peerId: peer.id,
        senderId: peer.id,
        kind: "equivocation",
        detail,
        records: proof,
      });
      const { rows } = await tx.query<{ state: string }>(
        "SELECT state FROM fed_peers WHERE id = $1 FOR UPDATE",
        [peer.id],
      );
      if (rows[0]?.state !== "active") return;
      await transitionPeer(tx, peer.id, "active", "quarantined", { kind: "equivocation", reason: detail });
      emit(
        await appendEvent(tx, {
          type: "federation.peer.quarantined",
          resourceType: "peer",
          resourceId: peer.id,
          data: { kind: "equivocation", detail, sender: peer.id },
        }),
      );
    });
    this.d.log.warn({ peer: peer.name, detail }, "federation peer quarantined");
  }
}

function idsOf(s: SignedStatement): Pick<StatementContent, "handoff" | "vm" | "source" | "target"> {
  return { handoff: s.handoff, vm: s.vm, source: s.source, target: s.target };
}

/** The VM's name an abort carries, if it is one (a name is only shown, never acted on). */
function abortedVmName(abort: SignedStatement): string {
  const name = abort.detail?.vmName;
  return typeof name === "string" && Value.Check(ResourceName, name) ? name : "";
}
