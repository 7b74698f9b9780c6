/**
 * Runs live migrations, step by step, recording each step durably so that any failure or
 * restart ends in one of two outcomes: the VM runs on the target, or it still runs on the
 * source. Never both, never neither.
 *
 *   queued ──limits allow──▶ preparing ──target QEMU waiting──▶ transferring
 *     (disk mirror until in sync, then memory pre-copy until QEMU completes; the source is
 *      then paused) ──▶ switching-over ──target runs it──▶ completed
 *   any failure, cancel or timeout before switching-over ──▶ failed / cancelled:
 *     target QEMU killed and its disk removed, source resumed if paused.
 *   switching-over is re-runnable: after a server restart it is finished if the target
 *     can take the VM, else rolled back to the source.
 *
 * The source stays the authority until the target confirms it is running; only then is
 * the source QEMU stopped and its disk removed.
 */
import type { Logger } from "pino";
import type { AgentOutgoingStatus } from "../api/types/agent.js";
import type { ClusterEvent } from "../api/types/events.js";
import {
  agentMigrationTuning,
  MIGRATION_OPTION_DEFAULTS,
  type MigrationOptions,
} from "../api/types/migrations.js";
import { AgentClient } from "../cluster/agent-client.js";
import { bootImage } from "../cluster/reconciler.js";
import { getHost } from "../cluster/store/hosts.js";
import { getImage } from "../cluster/store/images.js";
import {
  getMigration,
  isCancelRequested,
  listMigrations,
  type MigrationRecord,
  moveVmToHost,
  saveProgress,
  setMigrationTransport,
  transitionMigration,
} from "../cluster/store/migrations.js";
import type { Store } from "../cluster/store/store.js";
import { getVm, transitionVm } from "../cluster/store/vms.js";
import { describeError, isNovaError, NovaError } from "../lib/errors.js";
import { toProgress } from "./progress.js";
import { startable } from "./queue.js";

/** Orchestrator options. */
export interface OrchestratorOptions {
  /** Concurrent outgoing migrations per host; more wait in `queued`. @defaultValue 2 */
  maxOutgoingPerHost?: number;
  /** Concurrent incoming migrations per host. @defaultValue 2 */
  maxIncomingPerHost?: number;
  /** How often progress is read from the source (each phase ends up to one interval late). @defaultValue 200 */
  pollMs?: number;
  /** How long an agent may be unreachable mid-migration before it is rolled back. @defaultValue 60000 */
  unreachableGraceMs?: number;
}

/** Why a migration is being rolled back. */
class Abort extends Error {
  constructor(
    readonly outcome: "failed" | "cancelled",
    reason: string,
  ) {
    super(reason);
  }
}

/**
 * An agent was unreachable during switch-over. Rolling back then could leave the VM
 * running twice (the target may already have resumed it), so the migration stays in
 * switching-over and is retried until both agents answer.
 */
class RetryLater extends Error {}

/** A failure after post-copy began: there is nothing to roll back to. */
class PostcopyLost extends Error {}

/** Default tuning (also documented in docs/migration.md). */
export const DEFAULT_OPTIONS = MIGRATION_OPTION_DEFAULTS;

/** Starts queued migrations within limits and runs each to an end. */
export class MigrationOrchestrator {
  private readonly running = new Map<string, Promise<void>>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = true;
  private readonly o: Required<OrchestratorOptions>;

  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    private readonly wakeReconciler: () => void,
    options: OrchestratorOptions = {},
  ) {
    this.o = {
      maxOutgoingPerHost: options.maxOutgoingPerHost ?? 2,
      maxIncomingPerHost: options.maxIncomingPerHost ?? 2,
      pollMs: options.pollMs ?? 200,
      unreachableGraceMs: options.unreachableGraceMs ?? 60_000,
    };
  }

  /** Resumes what a previous server left in flight, then schedules. */
  start(): void {
    this.stopped = false;
    this.wake();
  }

  /** Stops scheduling; in-flight runners finish their current step and stop. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await Promise.allSettled(this.running.values());
  }

  /** Looks for work now. */
  wake(): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.schedule()
      .catch((err) => this.log.error({ err }, "migration scheduling failed"))
      .finally(() => {
        if (!this.stopped) this.timer = setTimeout(() => this.wake(), 1000);
      });
  }

  private async schedule(): Promise<void> {
    const active = await listMigrations(this.store.read, { activeOnly: true });
    const limits = { maxOutgoing: this.o.maxOutgoingPerHost, maxIncoming: this.o.maxIncomingPerHost };
    // A runner that just started may not have written `preparing` yet: count it in flight.
    const view = active.map((m) =>
      this.running.has(m.id) && m.state === "queued" ? { ...m, state: "preparing" as const } : m,
    );
    const toStart = new Set(startable(view, limits).map((m) => m.id));
    // Everything already past `queued` is resumed (after a restart); queued ones as allowed.
    for (const m of active) {
      if (this.running.has(m.id) || (m.state === "queued" && !toStart.has(m.id))) continue;
      const run = this.runMigration(m)
        .catch((err) => this.log.error({ err, migration: m.id }, "migration runner crashed"))
        .finally(() => {
          this.running.delete(m.id);
          this.wake();
        });
      this.running.set(m.id, run);
    }
  }

  private async runMigration(initial: MigrationRecord): Promise<void> {
    let m = initial;
    const source = new AgentClient(await getHost(this.store.read, m.sourceHostId));
    const target = new AgentClient(await getHost(this.store.read, m.targetHostId));
    const vmId = m.vmId;
    if (!vmId) {
      await this.finish(m, "failed", "the VM was deleted", "");
      return;
    }
    try {
      if (m.state === "preparing" || m.state === "transferring") {
        // The target's listening endpoints lived in the previous server's memory.
        throw new Abort("failed", "the server restarted during the transfer");
      }
      if (m.state === "queued") {
        m = await this.step(m, "preparing", "preparing the target");
        const tuning = agentMigrationTuning(m.options);
        const copied = await this.ensureImageOnTarget(m, vmId, source, target);
        const vm = await getVm(this.store.read, vmId);
        const image = await getImage(this.store.read, vm.imageId);
        const endpoints = await target.prepareIncoming(vmId, {
          migrationId: m.id,
          tuning,
          spec: {
            name: vm.name,
            generation: vm.generation + 1,
            vcpus: vm.vcpus,
            memoryMiB: vm.memoryMiB,
            kernelArgs: vm.kernelArgs,
            image: bootImage(image),
            power: "running",
            // Recorded when the migration was accepted (migration-service.ts): the
            // destination starts exactly the machine the source runs.
            ...(vm.machineType ? { machineType: vm.machineType } : {}),
          },
        });
        await this.checkCancel(m);
        m = await this.step(m, "transferring", "mirroring the disk", { baseImageCopied: copied });
        const mirrorStarted = await this.retrying(m, () =>
          source.startOutgoing(vmId, {
            migrationId: m.id,
            step: "mirror",
            endpoints,
            tuning,
            transport: requestedTransport(m.options),
          }),
        );
        if (mirrorStarted.transport) {
          const t = mirrorStarted.transport;
          await this.store.write(async (tx) => setMigrationTransport(tx, m.id, t.chosen));
          this.log.info({ migration: m.id, transport: t.chosen, reason: t.reason }, "transport chosen");
        }
        // The memory status still shows how an earlier migration of this VM ended until
        // this one's memory step starts, so it is not checked yet.
        const mirrored = await this.pollUntil(
          m,
          source,
          vmId,
          "disk-mirror",
          (s) => s.mirror?.ready === true,
          {
            cancellable: true,
            checkMemory: false,
          },
        );
        m = await this.step(m, "transferring", "copying memory (pre-copy)", {
          baseImageCopied: copied,
          diskBytes: mirrored.mirror?.len ?? 0,
        });
        await this.retrying(m, () =>
          source.startOutgoing(vmId, {
            migrationId: m.id,
            step: "memory",
            endpoints,
            tuning,
            // The source agent switches over the moment QEMU pauses, instead of a poll and
            // a call later (all of it downtime); post-copy keeps the explicit step.
            autoSwitchover: !tuning.postcopy,
          }),
        );
        let postcopyAsked = false;
        await this.pollUntil(m, source, vmId, "memory", (st) => {
          const mem = st.memory;
          // Post-copy only when asked for (a failure after the switch loses the VM). It is
          // started during the first pre-copy pass: a later switch gains nothing for a
          // guest that cannot converge, and on QEMU 7.2 under TCG it corrupted guest memory
          // (the VM must stop before QEMU's second dirty-bitmap sync there). See
          // docs/migration.md, "Busy guests under TCG".
          if (tuning.postcopy && !postcopyAsked && mem?.status === "active" && mem.pass >= 1) {
            postcopyAsked = true;
            void this.retrying(m, () =>
              source.startOutgoing(vmId, { migrationId: m.id, step: "postcopy" }),
            ).catch((err) =>
              this.log.warn(
                { err: describeError(err) },
                "switching to post-copy failed; staying in pre-copy",
              ),
            );
          }
          return mem?.status === "pre-switchover" || mem?.status === "device" || mem?.status === "completed";
        });
        m = await this.step(m, "switching-over", "memory converged; the source is paused", {
          baseImageCopied: copied,
        });
      }
      await this.switchOver(m, vmId, source, target);
    } catch (err) {
      if (err instanceof PostcopyLost) {
        await this.store.write(async (tx, emit) => {
          const vm = await getVm(tx, vmId, true);
          if (vm.state === "migrating") emit(await transitionVm(tx, vm, "failed", err.message));
          const current = await getMigration(tx, m.id, true);
          emit(
            await transitionMigration(tx, current, "failed", err.message, {
              rollback: "none possible after post-copy began",
            }),
          );
        });
        return;
      }
      if (err instanceof RetryLater) {
        this.log.warn({ migration: m.id, reason: err.message }, "switch-over waits for an unreachable agent");
        await sleep(2000);
        return; // the scheduler runs it again: it is still active
      }
      await this.rollBack(m, vmId, source, target, err);
    }
  }

  private async switchOver(
    m: MigrationRecord,
    vmId: string,
    source: AgentClient,
    target: AgentClient,
  ): Promise<void> {
    // Past this point cancelling is refused: the target may already hold the newer state.
    // The source finishes the disk mirror while its vCPUs are paused (the target disk
    // becomes a consistent copy), then QEMU sends the final device state.
    await unlessUnreachable(
      () => source.startOutgoing(vmId, { migrationId: m.id, step: "switchover" }),
      `source ${m.sourceHost}`,
    );
    let done = await this.pollUntil(
      m,
      source,
      vmId,
      "switch-over",
      (st) => st.memory?.status === "completed" || st.memory?.status === "postcopy-active",
      { cancellable: false },
    );
    const vm = await getVm(this.store.read, vmId);
    const observed = await unlessUnreachable(
      () => target.finishIncoming(vmId, m.id, vm.generation + 1),
      `target ${m.targetHost}`,
    );
    if (observed.state !== "running")
      throw new Abort("failed", `the target did not resume the VM: ${observed.reason || observed.state}`);
    if (done.memory?.status === "postcopy-active") {
      // The target runs the VM and pulls its remaining pages from the source: wait for
      // the last page. A failure now cannot be rolled back.
      try {
        done = await this.pollUntil(m, source, vmId, "post-copy", (st) => st.memory?.status === "completed", {
          cancellable: false,
        });
      } catch (err) {
        if (err instanceof RetryLater) throw err;
        throw new PostcopyLost(
          `post-copy failed, the VM's memory is split between hosts and it is lost: ${describeError(err)}`,
        );
      }
    }
    const result = {
      ...(await getMigration(this.store.read, m.id)).result,
      ...(done.memory?.totalTimeMs === undefined ? {} : { totalTimeMs: done.memory.totalTimeMs }),
      ...(done.memory?.downtimeMs === undefined ? {} : { downtimeMs: done.memory.downtimeMs }),
      ...(done.memory?.downtimeBreakdown ? { downtimeBreakdown: done.memory.downtimeBreakdown } : {}),
      memoryBytes: done.memory?.transferredBytes ?? 0,
    };
    await this.store.write(async (tx, emit) => {
      const current = await getVm(tx, vmId, true);
      await moveVmToHost(tx, vmId, m.targetHostId);
      emit(
        await transitionVm(
          tx,
          { ...current, host: m.targetHost },
          "running",
          `migrated from ${m.sourceHost} to ${m.targetHost}`,
        ),
      );
      emit(
        await transitionMigration(
          tx,
          await getMigration(tx, m.id, true),
          "completed",
          `running on ${m.targetHost}`,
          { result },
        ),
      );
    });
    this.wakeReconciler();
    // The target runs the VM: the paused source copy can go. Retried, because leaving it
    // only costs disk space on the source, never correctness.
    for (let attempt = 1; attempt <= 5; attempt++) {
      try {
        await source.releaseOutgoing(vmId);
        return;
      } catch (err) {
        this.log.warn({ err: describeError(err), attempt }, "releasing the source copy failed; retrying");
        await new Promise((r) => setTimeout(r, 2000 * attempt));
      }
    }
  }

  private async rollBack(
    m0: MigrationRecord,
    vmId: string,
    source: AgentClient,
    target: AgentClient,
    err: unknown,
  ): Promise<void> {
    const m = await getMigration(this.store.read, m0.id);
    const outcome = err instanceof Abort ? err.outcome : "failed";
    const reason = describeError(err);
    this.log.warn({ migration: m.id, reason }, "rolling back migration");
    const undone: string[] = [];
    // The target first: once its QEMU is gone the source may be resumed even if the
    // transfer had completed. The target never runs the VM before finishIncoming's `cont`.
    let targetGone = false;
    try {
      await this.retrying(m, () => target.deleteVm(vmId));
      targetGone = true;
      undone.push(`destination QEMU stopped and its disk removed on ${m.targetHost}`);
    } catch (e) {
      undone.push(
        `destination cleanup on ${m.targetHost} failed (${describeError(e)}); its agent keeps a paused copy and its disk until removed by hand (it is never resumed)`,
      );
    }
    // Only a source QEMU known to be gone makes the VM failed; an unreachable source agent
    // says nothing about its QEMU, which its next heartbeat will report.
    let sourceGone = false;
    try {
      const s = await this.retrying(m, () => source.cancelOutgoing(vmId, m.id, targetGone));
      sourceGone = s.vmStatus === "absent";
      undone.push(
        s.vmStatus === "running" ? `VM kept running on ${m.sourceHost}` : `source QEMU is ${s.vmStatus}`,
      );
    } catch (e) {
      undone.push(`could not resume the source (${describeError(e)}); its agent will report the VM's state`);
    }
    const rollback = undone.join("; ");
    await this.store.write(async (tx, emit) => {
      const current = await getVm(tx, vmId, true).catch(() => undefined);
      if (current?.state === "migrating") {
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
    this.wakeReconciler();
  }

  /** Polls the source until `done`, saving progress; aborts on cancel, timeout, failure or a lost agent. */
  private async pollUntil(
    m: MigrationRecord,
    source: AgentClient,
    vmId: string,
    phase: string,
    done: (s: AgentOutgoingStatus) => boolean,
    opts: { cancellable: boolean; checkMemory?: boolean } = { cancellable: true },
  ): Promise<AgentOutgoingStatus> {
    const deadline =
      Date.parse(m.startedAt ?? m.createdAt) +
      (m.options.timeoutSeconds ?? DEFAULT_OPTIONS.timeoutSeconds) * 1000;
    let unreachableSince: number | undefined;
    for (;;) {
      if (this.stopped)
        throw opts.cancellable
          ? new Abort("failed", "the server is shutting down")
          : new RetryLater("the server is shutting down");
      if (opts.cancellable) await this.checkCancel(m);
      if (opts.cancellable && Date.now() > deadline) {
        throw new Abort(
          "failed",
          `timed out after ${m.options.timeoutSeconds ?? DEFAULT_OPTIONS.timeoutSeconds} s (the guest dirties memory faster than it can be sent; try auto-converge, a higher downtime limit or post-copy)`,
        );
      }
      let status: AgentOutgoingStatus;
      try {
        status = await source.outgoingStatus(vmId, m.id);
        unreachableSince = undefined;
      } catch (err) {
        if (!isNovaError(err, "NOVA_HOST_UNREACHABLE")) throw err;
        unreachableSince ??= Date.now();
        if (!opts.cancellable) throw new RetryLater(`source ${m.sourceHost} is unreachable`);
        if (Date.now() - unreachableSince > this.o.unreachableGraceMs) {
          throw new Abort(
            "failed",
            `source host ${m.sourceHost} unreachable for ${this.o.unreachableGraceMs / 1000} s`,
          );
        }
        await sleep(this.o.pollMs);
        continue;
      }
      if (status.vmStatus === "absent")
        throw new Abort("failed", `the source QEMU on ${m.sourceHost} is gone`);
      if (status.mirror?.error) throw new Abort("failed", `disk mirror failed: ${status.mirror.error}`);
      const mem = opts.checkMemory === false ? null : status.memory;
      if (mem && (mem.status === "failed" || mem.status === "cancelled")) {
        throw new Abort(
          "failed",
          `memory transfer ${mem.status}${mem.errorDesc ? `: ${mem.errorDesc}` : ""}`,
        );
      }
      const progress = toProgress(phase, status);
      await saveProgress(this.store.read, m.id, progress);
      this.store.bus.publish([progressEvent(m, progress)]);
      if (done(status)) return status;
      await sleep(this.o.pollMs);
    }
  }

  /** Runs an agent call, riding out an agent restart (unreachable) for the grace period. */
  private async retrying<T>(m: MigrationRecord, call: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + this.o.unreachableGraceMs;
    for (;;) {
      try {
        return await call();
      } catch (err) {
        if (!isNovaError(err, "NOVA_HOST_UNREACHABLE") || Date.now() > deadline || this.stopped) throw err;
        this.log.info({ migration: m.id, err: describeError(err) }, "agent unreachable; retrying");
        await sleep(this.o.pollMs);
      }
    }
  }

  private async checkCancel(m: MigrationRecord): Promise<void> {
    if (await isCancelRequested(this.store.read, m.id)) throw new Abort("cancelled", "cancelled by the user");
  }

  private async step(
    m: MigrationRecord,
    to: MigrationRecord["state"],
    reason: string,
    result?: Record<string, unknown>,
  ): Promise<MigrationRecord> {
    await this.store.write(async (tx, emit) => {
      const current = await getMigration(tx, m.id, true);
      if (current.state === to && current.stateReason === reason) return;
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
    return getMigration(this.store.read, m.id);
  }

  private async finish(
    m: MigrationRecord,
    to: "failed" | "cancelled",
    reason: string,
    rollback: string,
  ): Promise<void> {
    await this.store.write(async (tx, emit) => {
      emit(await transitionMigration(tx, await getMigration(tx, m.id, true), to, reason, { rollback }));
    });
  }

  /** Copies the VM's image blobs from the source when the target lacks them; true when copied. */
  private async ensureImageOnTarget(
    m: MigrationRecord,
    vmId: string,
    source: AgentClient,
    target: AgentClient,
  ): Promise<boolean> {
    const vm = await getVm(this.store.read, vmId);
    const image = await getImage(this.store.read, vm.imageId);
    if (image.hostIds.includes(m.targetHostId)) return false;
    const blobs: [string, "disk" | "kernel" | "initrd"][] = [[image.diskDigest, "disk"]];
    if (image.kernelDigest) blobs.push([image.kernelDigest, "kernel"]);
    if (image.initrdDigest) blobs.push([image.initrdDigest, "initrd"]);
    for (const [digest, kind] of blobs) {
      const { ticket } = await source.blobTicket(digest);
      const url = `${source.url}/agent/v1/images/${encodeURIComponent(digest)}/blob?ticket=${encodeURIComponent(ticket)}`;
      const blob = await target.pullBlob({ digest, kind, url });
      if (blob.digest !== digest)
        throw new NovaError(
          "NOVA_AGENT_ERROR",
          `copied ${kind} has digest ${blob.digest}, expected ${digest}`,
        );
    }
    return true;
  }
}

/** A progress event: published live, not stored (id 0 = not in the events table). */
function progressEvent(m: MigrationRecord, progress: unknown): ClusterEvent {
  return {
    id: 0,
    at: new Date().toISOString(),
    type: "migration.progress",
    resourceType: "migration",
    resourceId: m.id,
    data: { vm: m.vm, progress },
  };
}

async function unlessUnreachable<T>(call: () => Promise<T>, who: string): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (isNovaError(err, "NOVA_HOST_UNREACHABLE")) throw new RetryLater(`${who} is unreachable`);
    throw err;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * What the source agent is asked for. Multifd and post-copy are QEMU-transport features,
 * so "auto" means QEMU's transport for them (the API refuses them with "dwcp").
 */
function requestedTransport(o: MigrationOptions): "auto" | "qemu" | "dwcp" {
  const t = o.transport ?? DEFAULT_OPTIONS.transport;
  if (t === "auto" && (o.multifdChannels || o.postcopy)) return "qemu";
  return t;
}
