/**
 * Runs one live migration: asks plan.ts for the next action, performs it through the
 * agents and the store, records what it learned, and asks again until the migration ends
 * or is handed back to the scheduler. Owns everything a run keeps in memory (the target's
 * endpoints, the source's last status, how long the source has been unreachable) and the
 * run's Reverter, which undoes the migration on rollback.
 *
 * The source stays the authority until the target confirms it is running; only then is
 * the source QEMU stopped and its disk removed.
 */
import type { Logger } from "pino";
import type {
  AgentIncomingEndpoints,
  AgentMigrationTuning,
  AgentOutgoingStatus,
} from "../api/types/agent.js";
import type { ClusterEvent } from "../api/types/events.js";
import {
  agentMigrationTuning,
  type MigrationOptions,
  type MigrationResult,
  resolveMigrationOptions,
} from "../api/types/migrations.js";
import type { AgentClient, AgentConnector } from "../cluster/agent-client.js";
import { getHost } from "../cluster/store/hosts.js";
import { recordSample } from "../cluster/store/migration-samples.js";
import {
  getMigration,
  isCancelRequested,
  type MigrationRecord,
  saveProgress,
  setMigrationTransport,
  transitionMigration,
} from "../cluster/store/migrations.js";
import type { Store } from "../cluster/store/store.js";
import { getVm, transitionVm, vmFence } from "../cluster/store/vms.js";
import { describeError, isNovaError } from "../lib/errors.js";
import { failpoint } from "../lib/failpoints.js";
import { Reverter } from "../lib/revert.js";
import { contextFromTraceparent, inSpan, untraced } from "../lib/tracing.js";
import { MIGRATION } from "../states/migration.js";
import { HostTarget } from "./host-target.js";
import {
  type MigrationAction,
  type MovedMark,
  movedBytes,
  nextAction,
  nextMovedMark,
  type Observations,
  type PlanPolicy,
  type RunStep,
} from "./plan.js";
import { toProgress } from "./progress.js";
import type { MigrationTarget } from "./target.js";

/** What a run needs from the orchestrator. */
export interface RunContext {
  store: Store;
  /** Clients for the hosts' agents. */
  agents: AgentConnector;
  /**
   * This cluster's id: with the VM's row, its fencing token, which the calls that resume a
   * copy carry (a migration inside the cluster keeps owner and epoch).
   */
  clusterId: string;
  log: Logger;
  /** Wakes the VM controller: it owns the VM again once its migration ended. */
  wakeVms: () => void;
  policy: PlanPolicy;
  /** True once the server is shutting down. */
  stopping: () => boolean;
  /** The target of a migration to another cluster (ACP); absent when the server has none. */
  clusterTarget?: (m: MigrationRecord) => Promise<MigrationTarget>;
  /** Told once when a run ends the migration (the server's metrics). */
  onEnded?: (m: MigrationRecord) => void;
}

/** Runs migration `m` until it ends or is handed back to the scheduler (still active). */
export async function runMigration(ctx: RunContext, m: MigrationRecord): Promise<void> {
  const source = ctx.agents.client(await getHost(ctx.store.read, m.sourceHostId));
  let target: MigrationTarget;
  if (m.targetHostId !== null) {
    const host = await getHost(ctx.store.read, m.targetHostId);
    target = new HostTarget(ctx.store, ctx.clusterId, ctx.log, host, ctx.agents.client(host), m.id);
  } else {
    if (!ctx.clusterTarget)
      throw new Error(`migration ${m.id} leaves the cluster, but this server runs no ACP`);
    target = await ctx.clusterTarget(m);
  }
  // One span per run, continuing the trace of the request that asked for the migration
  // (its traceparent was stored with it), so one trace covers the request and the run.
  await inSpan(
    "migration",
    {
      "novacron.migration.id": m.id,
      "novacron.vm.name": m.vm,
      "novacron.migration.transport": m.transport,
      "novacron.migration.source": m.sourceHost,
      "novacron.migration.target": target.label,
    },
    async (span) => {
      const run = new MigrationRun(ctx, m, source, target);
      await run.run();
      // Whatever path ended it (completed, rolled back, lost, abandoned), it is final now,
      // or handed back to the scheduler still active and ended by a later run.
      await run.reportEnd();
      const ended = await getMigration(ctx.store.read, m.id).catch(() => undefined);
      if (ended) span.setAttribute("novacron.migration.state", ended.state);
    },
    contextFromTraceparent(m.traceParent),
  );
}

/** What the rollback's undo steps found, for the migration's `rollback` text and the VM's state. */
interface RollbackNote {
  undone: string[];
  targetGone: boolean;
  sourceGone: boolean;
}

class MigrationRun {
  private step: RunStep = "picked-up";
  /** The single conversion of the user's options to the agents' tuning. */
  private readonly tuning: AgentMigrationTuning;
  private endpoints: AgentIncomingEndpoints | undefined;
  private baseImageCopied = false;
  private postcopyAsked = false;
  /** The source's answer to the last poll, until an action consumes it. */
  private fresh: Observations["source"];
  private unreachableSince: number | undefined;
  /** What the source had moved when it last grew by STALL_MIN_BYTES in this step, and when. */
  private moved: MovedMark | undefined;
  /**
   * How long it had not grown at the last reading. Measured between readings, not up to
   * now, so that a pause of this process (a stopped or starved server) is not a stall.
   */
  private stalledForMs: number | undefined;
  private handedOver: AgentOutgoingStatus | undefined;
  private targetAnswer: { state: string; reason: string; resumedAt?: number } | undefined;
  private failure: Observations["failure"];
  private readonly reverter = new Reverter();
  private readonly note: RollbackNote = { undone: [], targetGone: false, sourceGone: false };
  /** The migrating VM (null once deleted: the planner abandons such a migration first). */
  private readonly vmIdOrNull: string | null;
  /** ctx.onEnded was told. */
  private reported = false;
  /** The phase of the last stored sample, and when the next reading is worth offering. */
  private sampledPhase: string | undefined;
  private nextSampleAt = 0;

  constructor(
    private readonly ctx: RunContext,
    private m: MigrationRecord,
    private readonly source: AgentClient,
    private readonly target: MigrationTarget,
  ) {
    this.tuning = agentMigrationTuning(m.options);
    this.vmIdOrNull = m.vmId;
  }

  private get vmId(): string {
    if (!this.vmIdOrNull) throw new Error(`migration ${this.m.id} has no VM`);
    return this.vmIdOrNull;
  }

  async run(): Promise<void> {
    const vmId = this.vmIdOrNull;
    if (vmId) {
      // Registered up front, not after the steps they undo: a run picked up after a
      // restart does not know how far the previous one got, a preparation cut short
      // leaves no trace of how far it went, and both undos are harmless when there is
      // nothing to undo. They run newest first: the target before the source, because
      // once the target's QEMU is gone the source may be resumed even if the transfer
      // had completed (the target never runs the VM before `confirm`).
      this.reverter.add(() => this.resumeSource(vmId));
      this.reverter.add(() => this.removeTargetCopy(vmId));
    }
    for (;;) {
      const observations = await this.observe();
      const action = nextAction(this.m, observations, this.ctx.policy);
      this.failure = undefined;
      const fresh = this.fresh;
      if (action.kind !== "poll") this.fresh = undefined;
      switch (action.kind) {
        case "ended":
          return;
        case "abandon":
          await this.end("failed", action.reason, "");
          return;
        case "rollback":
          await inSpan("migration rollback", { "novacron.migration.reason": action.reason }, () =>
            this.rollBack(action.outcome, action.reason),
          );
          return;
        case "lost":
          await this.lose(action.reason);
          return;
        case "retry-later":
          this.ctx.log.warn(
            { migration: this.m.id, reason: action.reason },
            "switch-over waits for an unreachable agent",
          );
          await sleep(2000);
          return; // the scheduler runs it again: it is still active
      }
      try {
        // A span per step; the progress polls and the waits between them (five a second)
        // stay out of the trace.
        const done =
          action.kind === "poll" || action.kind === "wait"
            ? await untraced(() => this.perform(action, fresh))
            : await inSpan(`migration ${action.kind}`, { "novacron.migration.step": this.step }, () =>
                this.perform(action, fresh),
              );
        if (done) return;
        if ("next" in action && action.next !== this.step) {
          this.step = action.next;
          this.unreachableSince = undefined;
          this.moved = undefined;
          this.stalledForMs = undefined;
        }
      } catch (err) {
        this.failure = {
          action: action.kind,
          message: describeError(err),
          unreachable: unreachable(err),
        };
      }
    }
  }

  /** Reads what the planner needs for this step: only what the current code path reads. */
  private async observe(): Promise<Observations> {
    const o: Observations = {
      step: this.step,
      shuttingDown: this.ctx.stopping(),
      cancelRequested: false,
      deadline: this.deadline(),
      baseImageCopied: this.baseImageCopied,
      postcopy: { wanted: this.tuning.postcopy, asked: this.postcopyAsked },
      ...(this.fresh ? { source: this.fresh } : {}),
      ...(this.stalledForMs !== undefined ? { stalledForMs: this.stalledForMs } : {}),
      ...(this.handedOver ? { handedOver: this.handedOver } : {}),
      ...(this.targetAnswer ? { target: this.targetAnswer } : {}),
    };
    if (this.failure) return { ...o, failure: this.failure };
    try {
      if (this.step === "preparing") o.imageOnTarget = await this.imageOnTarget();
      // The cancel flag is read fresh before each poll while the guest runs on the
      // source, and once the target is prepared.
      const cancellable =
        (this.step === "target-ready" && this.m.state === "preparing") ||
        this.step === "mirroring" ||
        this.step === "copying-memory";
      if (cancellable && !this.fresh)
        o.cancelRequested = await isCancelRequested(this.ctx.store.read, this.m.id);
    } catch (err) {
      return {
        ...o,
        failure: {
          action: "observe",
          message: describeError(err),
          unreachable: unreachable(err),
        },
      };
    }
    return o;
  }

  private deadline(): Observations["deadline"] {
    const { timeoutSeconds } = resolveMigrationOptions(this.m.options);
    const at = Date.parse(this.m.startedAt ?? this.m.createdAt) + timeoutSeconds * 1000;
    return { passed: Date.now() > at, timeoutSeconds };
  }

  /** Performs one action; true when the migration ended with it. */
  private async perform(action: MigrationAction, fresh: Observations["source"]): Promise<boolean> {
    const vmId = this.vmId;
    const status = fresh?.kind === "status" ? fresh.status : undefined;
    const progress = async (phase: string | undefined): Promise<void> => {
      if (phase && status) await this.saveProgress(phase, status);
    };
    switch (action.kind) {
      case "mark":
        await progress(action.progress);
        await this.mark(action.to, action.reason, action.result);
        // Where the failover fault test kills the leader (docs/testing.md, "Faults").
        failpoint(`migration.${action.to}`);
        return false;
      case "copy-image":
        await this.copyImage(vmId);
        this.baseImageCopied = true;
        return false;
      case "prepare-target":
        this.endpoints = await this.prepareTarget(vmId);
        return false;
      case "start-mirror": {
        const endpoints = this.requireEndpoints();
        const started = await this.retrying(() =>
          this.source.startOutgoing(vmId, {
            migrationId: this.m.id,
            step: "mirror",
            endpoints,
            tuning: this.tuning,
            transport: requestedTransport(this.m.options),
          }),
        );
        if (started.transport) {
          const t = started.transport;
          await this.ctx.store.write(async (tx) => setMigrationTransport(tx, this.m.id, t.chosen));
          this.ctx.log.info(
            { migration: this.m.id, transport: t.chosen, reason: t.reason },
            "transport chosen",
          );
        }
        // The step answers with the source's status: the plan can go on from it (over DWCP
        // straight to memory) without another poll.
        this.fresh = { kind: "status", status: started };
        return false;
      }
      case "start-memory": {
        const endpoints = this.requireEndpoints();
        await this.retrying(() =>
          this.source.startOutgoing(vmId, {
            migrationId: this.m.id,
            step: "memory",
            endpoints,
            tuning: this.tuning,
            // The source agent switches over the moment QEMU pauses, instead of a poll and
            // a call later (all of it downtime); post-copy keeps the explicit step.
            autoSwitchover: action.autoSwitchover,
          }),
        );
        return false;
      }
      case "start-postcopy":
        await progress(action.progress);
        this.postcopyAsked = true;
        void this.retrying(() =>
          this.source.startOutgoing(vmId, { migrationId: this.m.id, step: "postcopy" }),
        ).catch((err) =>
          this.ctx.log.warn(
            { err: describeError(err) },
            "switching to post-copy failed; staying in pre-copy",
          ),
        );
        await sleep(action.ms);
        return false;
      case "start-switchover":
        // Past this point cancelling is refused: the target may already hold the newer
        // state. The source finishes the disk mirror while its vCPUs are paused (the
        // target disk becomes a consistent copy), then QEMU sends the final device state.
        // The step answers once QEMU ended the switch-over (or after a bounded wait): the
        // plan confirms on the target from that answer without another poll.
        this.fresh = {
          kind: "status",
          status: await this.source.startOutgoing(vmId, { migrationId: this.m.id, step: "switchover" }),
        };
        return false;
      case "poll":
        await this.poll(vmId);
        return false;
      case "wait":
        await progress(action.progress);
        await sleep(action.ms);
        return false;
      case "confirm": {
        await progress(action.progress);
        this.handedOver = status;
        this.targetAnswer = await this.target.finish(await getVm(this.ctx.store.read, vmId));
        return false;
      }
      case "complete":
        await progress(action.progress);
        await this.complete(vmId, action.result);
        return true;
      default:
        throw new Error(`action ${action.kind} is not performed here`);
    }
  }

  /** Reads the source's status into `fresh`, counting how long the source has been unreachable. */
  private async poll(vmId: string): Promise<void> {
    try {
      const status = await this.source.outgoingStatus(vmId, this.m.id);
      this.unreachableSince = undefined;
      this.fresh = { kind: "status", status };
      const now = Date.now();
      this.moved = nextMovedMark(this.moved, movedBytes(status), now);
      this.stalledForMs = now - this.moved.at;
    } catch (err) {
      if (!isNovaError(err, "NOVA_HOST_UNREACHABLE")) throw err;
      this.unreachableSince ??= Date.now();
      this.fresh = { kind: "unreachable", forMs: Date.now() - this.unreachableSince };
    }
  }

  private requireEndpoints(): AgentIncomingEndpoints {
    if (!this.endpoints) throw new Error("the target was not prepared by this run");
    return this.endpoints;
  }

  private async mark(to: MigrationRecord["state"], reason: string, result?: MigrationResult): Promise<void> {
    await this.ctx.store.write(async (tx, emit) => {
      const current = await getMigration(tx, this.m.id, true);
      emit(
        await transitionMigration(
          tx,
          current,
          to,
          reason,
          result ? { result: { ...current.result, ...result } } : {},
        ),
      );
    });
    this.m = await getMigration(this.ctx.store.read, this.m.id);
  }

  private async saveProgress(phase: string, status: AgentOutgoingStatus): Promise<void> {
    const progress = toProgress(phase, status);
    const now = new Date();
    // A new phase is always sampled, so the stored curve has each phase's first reading
    // (and the switch-over's); between them, readings before nextSampleAt are not offered.
    const sample = phase !== this.sampledPhase || now.getTime() >= this.nextSampleAt;
    if (!sample) await saveProgress(this.ctx.store.db, this.m.id, progress);
    else
      await this.ctx.store.write(async (tx) => {
        await saveProgress(tx, this.m.id, progress);
        const r = await recordSample(tx, this.m.id, progress, now, { force: phase !== this.sampledPhase });
        this.nextSampleAt = r.nextAt;
        if (r.recorded) this.sampledPhase = phase;
      });
    // The event carries the sample's time, so a chart joining both sees one reading once.
    this.ctx.store.bus.publish([progressEvent(this.m, progress, now)]);
  }

  private async imageOnTarget(): Promise<boolean> {
    return this.target.hasImage(await getVm(this.ctx.store.read, this.vmId));
  }

  private async copyImage(vmId: string): Promise<void> {
    await this.target.copyImage(await getVm(this.ctx.store.read, vmId), this.source);
  }

  private async prepareTarget(vmId: string): Promise<AgentIncomingEndpoints> {
    return this.target.prepare(await getVm(this.ctx.store.read, vmId), {
      migrationId: this.m.id,
      tuning: this.tuning,
      // With dwcp the destination's QEMU listens on loopback only (docs/migration.md).
      transport: requestedTransport(this.m.options),
    });
  }

  /** The target runs the VM: record it there, end the migration, then see to the source copy. */
  private async complete(vmId: string, figures: MigrationResult): Promise<void> {
    const m = this.m;
    const result = { ...(await getMigration(this.ctx.store.read, m.id)).result, ...figures };
    const vm = await this.ctx.store.write(async (tx, emit) => {
      const current = await getVm(tx, vmId, true);
      for (const e of await this.target.takeOver(
        tx,
        current,
        `migrated from ${m.sourceHost} to ${this.target.label}`,
      ))
        emit(e);
      emit(
        await transitionMigration(
          tx,
          await getMigration(tx, m.id, true),
          "completed",
          `running on ${this.target.label}`,
          { result },
        ),
      );
      return current;
    });
    this.reverter.success();
    this.ctx.wakeVms();
    // Before the source copy is seen to, which may wait out an unreachable source agent.
    await this.reportEnd();
    await this.target.afterComplete(vm, this.source);
  }

  /** Tells ctx.onEnded, once, if the migration has reached a final state. */
  async reportEnd(): Promise<void> {
    if (this.reported || !this.ctx.onEnded) return;
    const after = await getMigration(this.ctx.store.read, this.m.id).catch(() => undefined);
    if (!after || !MIGRATION.isFinal(after.state)) return;
    this.reported = true;
    this.ctx.onEnded(after);
  }

  /** Undo: the target's copy goes (or, across clusters, can never run). */
  private async removeTargetCopy(vmId: string): Promise<void> {
    try {
      const vm = await getVm(this.ctx.store.read, vmId);
      this.note.undone.push(await this.retrying(() => this.target.remove(vm)));
      this.note.targetGone = true;
    } catch (e) {
      this.note.undone.push(
        `destination cleanup on ${this.target.label} failed (${describeError(e)}); its paused copy stays until removed by hand (it is never resumed)`,
      );
    }
  }

  /**
   * Undo: cancel the outgoing migration and resume the source. Only a source QEMU known
   * to be gone makes the VM failed; an unreachable source agent says nothing about its
   * QEMU, which its next heartbeat will report.
   */
  private async resumeSource(vmId: string): Promise<void> {
    try {
      const fence = vmFence(await getVm(this.ctx.store.read, vmId), this.ctx.clusterId);
      const s = await this.retrying(() =>
        this.source.cancelOutgoing(vmId, this.m.id, this.note.targetGone, fence),
      );
      this.note.sourceGone = s.vmStatus === "absent";
      this.note.undone.push(
        s.vmStatus === "running" ? `VM kept running on ${this.m.sourceHost}` : `source QEMU is ${s.vmStatus}`,
      );
    } catch (e) {
      this.note.undone.push(
        `could not resume the source (${describeError(e)}); its agent will report the VM's state`,
      );
    }
  }

  /**
   * Runs the undos, then records the outcome: the VM leaves `migrating` (running on the
   * source, or failed when its QEMU is gone) in the same transaction as the migration's
   * end, so nobody sees one without the other.
   */
  private async rollBack(outcome: "failed" | "cancelled", reason: string): Promise<void> {
    const m = await getMigration(this.ctx.store.read, this.m.id);
    this.m = m;
    const vmId = this.vmId;
    this.ctx.log.warn({ migration: m.id, reason }, "rolling back migration");
    await this.reverter.fail();
    const rollback = this.note.undone.join("; ");
    const sourceGone = this.note.sourceGone;
    await this.ctx.store.write(async (tx, emit) => {
      const current = await getVm(tx, vmId, true).catch(() => undefined);
      // A VM this cluster released to another is not resumed here whatever went wrong:
      // only the hand-off's signed outcome gives it back (docs/federation.md §10).
      if (current?.state === "migrating" && current.ownerClusterId === null) {
        emit(
          sourceGone
            ? await transitionVm(
                tx,
                current,
                "failed",
                `migration ${outcome} and the source QEMU is gone: ${reason}`,
              )
            : await transitionVm(tx, current, "running", `migration ${outcome}: ${reason}`),
        );
      }
      emit(await transitionMigration(tx, await getMigration(tx, m.id, true), outcome, reason, { rollback }));
    });
    this.ctx.wakeVms();
  }

  /** Post-copy failed: the VM is lost, nothing can be rolled back. */
  private async lose(reason: string): Promise<void> {
    const vmId = this.vmId;
    this.reverter.success();
    await this.ctx.store.write(async (tx, emit) => {
      const vm = await getVm(tx, vmId, true);
      if (vm.state === "migrating") emit(await transitionVm(tx, vm, "failed", reason));
      const current = await getMigration(tx, this.m.id, true);
      emit(
        await transitionMigration(tx, current, "failed", reason, {
          rollback: "none possible after post-copy began",
        }),
      );
    });
  }

  /** Ends the migration without anything to undo. */
  private async end(to: "failed" | "cancelled", reason: string, rollback: string): Promise<void> {
    await this.ctx.store.write(async (tx, emit) => {
      emit(await transitionMigration(tx, await getMigration(tx, this.m.id, true), to, reason, { rollback }));
    });
  }

  /** Runs an agent call, riding out an agent restart (unreachable) for the grace period. */
  private async retrying<T>(call: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + this.ctx.policy.unreachableGraceMs;
    for (;;) {
      try {
        return await call();
      } catch (err) {
        if (!isNovaError(err, "NOVA_HOST_UNREACHABLE") || Date.now() > deadline || this.ctx.stopping())
          throw err;
        this.ctx.log.info({ migration: this.m.id, err: describeError(err) }, "agent unreachable; retrying");
        await sleep(this.ctx.policy.pollMs);
      }
    }
  }
}

/** A progress event: published live, not stored (id 0 = not in the events table). */
function progressEvent(m: MigrationRecord, progress: unknown, at: Date): ClusterEvent {
  return {
    id: 0,
    at: at.toISOString(),
    type: "migration.progress",
    resourceType: "migration",
    resourceId: m.id,
    data: { vm: m.vm, progress },
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * What the source agent is asked for. Multifd and post-copy are QEMU-transport features,
 * so "auto" means QEMU's transport for them (the API refuses them with "dwcp").
 */
function requestedTransport(o: MigrationOptions): "auto" | "qemu" | "dwcp" {
  const t = resolveMigrationOptions(o).transport;
  if (t === "auto" && (o.multifdChannels || o.postcopy)) return "qemu";
  return t;
}

/**
 * A failure that says nothing about the migration, only that the other side did not
 * answer: a host's agent, or (across clusters) the destination cluster, or a hand-off
 * waiting on it. During the switch-over it means "try again", never "roll back".
 */
function unreachable(err: unknown): boolean {
  return isNovaError(err, "NOVA_HOST_UNREACHABLE") || isNovaError(err, "NOVA_FED_PEER_UNREACHABLE");
}
