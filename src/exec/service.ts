/**
 * User operations on executions: submit (validate, authorise, normalise assets, claim the
 * idempotency key, record, queue), cancel, approve, reject, retry, the dead-letter queue,
 * and the housekeeping the pool's reaper triggers (reaped jobs, expired approvals).
 */

import type { ExecutionsPost, Plan } from "../api/types/executions.js";
import type { Queryable } from "../cluster/store/db.js";
import { claimKey } from "../cluster/store/exec-idempotency.js";
import { lockOrder, releaseAssets } from "../cluster/store/exec-locks.js";
import {
  clearRunLimits,
  type ExecutionRecord,
  executionSummaries,
  expiredApprovals,
  getExecution,
  insertExecution,
  lockExecution,
  moveExecution,
  resetSteps,
  setCancelRequested,
  setExecutionJob,
  transitionExecution,
  transitionStep,
} from "../cluster/store/executions.js";
import {
  enqueueJobs,
  getJob,
  type JobRecord,
  listDeadJobs,
  lockJob,
  type ReapedJob,
  requeueDeadJob,
} from "../cluster/store/executions-queue.js";
import { getHost } from "../cluster/store/hosts.js";
import type { Store } from "../cluster/store/store.js";
import { getVm } from "../cluster/store/vms.js";
import { describeError, NovaError } from "../lib/errors.js";
import { stateChanged } from "../lib/state-machine.js";
import { currentTraceparent } from "../lib/tracing.js";
import { authorize, type Principal } from "../policy/permissions.js";
import { EXECUTION, FINAL_STATES, RETRYABLE_STATES } from "../states/execution.js";
import type { ExecConfig, SlaClass } from "./config.js";
import { idempotencyKey } from "./idempotency.js";
import { CANCEL_CHANNEL, type WakeChannel } from "./notify.js";
import { assertMayRun } from "./rbac.js";
import { EXECUTION_QUEUE } from "./runner.js";
import { missingSecrets, secretRefs } from "./secrets.js";
import { vmTargets } from "./steps/step.js";

/** A DLQ entry with its execution. */
export interface DeadLetter {
  job: JobRecord;
  execution: { id: string; name: string; state: string } | null;
}

/** Executions: the user surface. */
export class ExecutionService {
  constructor(
    private readonly store: Store,
    private readonly config: ExecConfig,
    private readonly wake?: WakeChannel,
  ) {}

  /** Submits a plan; a duplicate (same key within the window) returns the existing execution. */
  async submit(
    principal: Principal,
    body: ExecutionsPost,
  ): Promise<{ execution: ExecutionRecord; duplicate: boolean }> {
    const plan = body.plan;
    assertMayRun(principal, plan);
    const { assets, stepAssets } = await this.normaliseAssets(plan);
    const missing = await missingSecrets(this.store.read, secretRefs(plan));
    if (missing.length > 0) {
      throw new NovaError(
        "NOVA_EXEC_PLAN",
        `The plan references secret(s) ${missing.join(", ")} that do not exist. Store them first: novacron exec secret set <name>`,
        { details: { missing } },
      );
    }
    const sla: SlaClass = plan.sla ?? "medium";
    const limits = this.config.sla[sla];
    const tenant = plan.tenant ?? "default";
    const key = idempotencyKey({
      plan,
      tenant,
      actor: `${principal.kind}:${principal.id}`,
      clientKey: body.idempotencyKey,
    });
    const needsApproval = plan.approval === "required";
    const result = await this.store.write(async (tx, emit) => {
      const newId = crypto.randomUUID();
      const owner = await claimKey(tx, key, newId, this.config.idempotencyWindowMs);
      if (owner !== newId) return { id: owner, duplicate: true };
      const { event } = await insertExecution(
        tx,
        {
          name: plan.name ?? "",
          tenant,
          actor: { kind: principal.kind, id: principal.id, name: principal.name },
          plan,
          sla,
          mode: body.wait || plan.mode === "immediate" ? "immediate" : "background",
          priority: plan.priority ?? 5,
          state: needsApproval ? "pending_approval" : "queued",
          assets,
          stepAssets,
          lock: plan.lock ?? "step",
          idempotencyKey: key,
          traceParent: currentTraceparent(),
          approvalExpiresAt: needsApproval
            ? new Date(
                Date.now() + (plan.timeouts?.approvalSeconds ?? limits.approvalTimeoutMs / 1000) * 1000,
              )
            : null,
        },
        newId,
      );
      emit(event);
      if (!needsApproval) await this.enqueue(tx, newId, plan, sla);
      return { id: newId, duplicate: false };
    });
    if (!result.duplicate) this.wake?.wakeJobs(EXECUTION_QUEUE);
    return { execution: await getExecution(this.store.read, result.id), duplicate: result.duplicate };
  }

  private async enqueue(tx: Queryable, id: string, plan: Plan, sla: SlaClass): Promise<number> {
    const limits = this.config.sla[sla];
    const [jobId] = await enqueueJobs(tx, EXECUTION_QUEUE, [
      {
        payload: { executionId: id },
        priority: plan.priority ?? 5,
        maxAttempts: limits.maxAttempts,
        leaseMs: limits.leaseMs,
      },
    ]);
    await setExecutionJob(tx, id, jobId!);
    return jobId!;
  }

  /**
   * Each step's assets — VMs and hosts by id, URLs without query or credentials — and all
   * of them with the plan's own; sorted (the mutex order).
   */
  private async normaliseAssets(plan: Plan): Promise<{ assets: string[]; stepAssets: string[][] }> {
    const all = new Set<string>(plan.assets ?? []);
    const stepAssets: string[][] = [];
    for (const [i, step] of plan.steps.entries()) {
      const where = `step ${i + 1} (${step.kind})`;
      const assets = new Set<string>();
      stepAssets.push([]);
      try {
        if ("vm" in step || "vms" in step) {
          const targets = vmTargets(step as { vm?: string; vms?: string[] });
          if (targets.length === 0) throw new NovaError("NOVA_EXEC_PLAN", "it names no VM: give vm or vms");
          for (const t of targets) assets.add(`vm:${(await getVm(this.store.read, t)).id}`);
        }
        if (step.kind === "vm.migrate" && step.targetHost)
          assets.add(`host:${(await getHost(this.store.read, step.targetHost)).id}`);
        if (step.kind === "host.command")
          assets.add(`host:${(await getHost(this.store.read, step.host)).id}`);
        if (step.kind === "http") {
          const u = new URL(step.url.replace(/\$\{secret:[^}]+\}/g, "x"));
          assets.add(`url:${u.protocol}//${u.host}${u.pathname}`);
        }
        if (step.kind === "vm.console-check") new RegExp(step.pattern);
      } catch (err) {
        throw new NovaError("NOVA_EXEC_PLAN", `The plan's ${where} is invalid: ${describeError(err)}`, {
          details: { step: i, kind: step.kind },
          cause: err,
        });
      }
      stepAssets[i] = lockOrder(assets);
      for (const a of assets) all.add(a);
    }
    return { assets: lockOrder(all), stepAssets };
  }

  /** Cancels: at once when not running; a running one stops at its step (cooperatively, then forced). */
  async cancel(id: string): Promise<ExecutionRecord> {
    await this.store.write(async (tx, emit) => {
      const e = await lockExecution(tx, id);
      if (FINAL_STATES.includes(e.state)) {
        throw new NovaError("NOVA_ILLEGAL_STATE", `Execution ${id} already ended (${e.state}).`, {
          details: { state: e.state },
        });
      }
      await setCancelRequested(tx, id);
      if (e.state !== "running") {
        const waiting = e.steps.find((s) => s.state === "waiting_approval");
        if (waiting) {
          emit(
            await transitionStep(tx, id, waiting.index, waiting.state, "cancelled", { message: "cancelled" }),
          );
        }
        emit(
          await transitionExecution(tx, e, "cancelled", `cancelled while ${e.state}`, {
            data: { stoppedAtStep: e.currentStep },
          }),
        );
        await releaseAssets(tx, id);
      } else {
        await tx.query("SELECT pg_notify($1, $2)", [CANCEL_CHANNEL, id]);
      }
    });
    this.wake?.wakeCancel(id);
    return getExecution(this.store.read, id);
  }

  /**
   * Approves a pending execution: it is queued (and resumes after its approval step). An
   * approval is a second pair of eyes, so the token that submitted the execution may not
   * give it unless it was granted executions:approve-own.
   */
  async approve(id: string, principal: Principal, reason = ""): Promise<ExecutionRecord> {
    await this.store.write(async (tx, emit) => {
      const e = await lockExecution(tx, id);
      this.assertPendingApproval(e, "approve");
      const own = e.actorKind === principal.kind && e.actorId === principal.id;
      if (own && !authorize(principal, "executions:approve-own")) {
        throw new NovaError(
          "NOVA_EXEC_SELF_APPROVAL",
          principal.kind === "user"
            ? `Execution ${id} was submitted by you (user ${principal.name}), so you may not approve it as well. Ask another approver.`
            : `Execution ${id} was submitted by this token (${principal.kind}:${principal.name}), which may not approve it as well. Ask another approver, or use a token granted executions:approve-own (novacron token create NAME --grant executions:approve-own).`,
          { details: { execution: id, submittedBy: e.actor, needs: "executions:approve-own" } },
        );
      }
      if (e.approvalExpiresAt && new Date(e.approvalExpiresAt).getTime() < Date.now()) {
        throw new NovaError(
          "NOVA_EXEC_TIMEOUT",
          `Execution ${id}'s approval window closed at ${e.approvalExpiresAt}; it can no longer be approved. Retry it to ask again.`,
          { details: { execution: id, limit: "approval" } },
        );
      }
      const who = `${principal.kind}:${principal.name}`;
      const approved = await moveExecution(
        tx,
        e,
        "approved",
        `approved by ${who}${reason ? `: ${reason}` : ""}`,
        { approvalExpiresAt: null, data: { by: who } },
      );
      emit(approved.event);
      const waiting = e.steps.find((s) => s.state === "waiting_approval");
      if (waiting) {
        emit(
          await transitionStep(tx, id, waiting.index, waiting.state, "completed", {
            progressPct: 100,
            message: `approved by ${who}`,
            result: { approvedBy: who, reason },
          }),
        );
      }
      const jobId = await this.enqueue(tx, id, e.plan, e.sla);
      emit(await transitionExecution(tx, approved.execution, "queued", "approved; queued", { jobId }));
    });
    this.wake?.wakeJobs(EXECUTION_QUEUE);
    return getExecution(this.store.read, id);
  }

  /** Rejects a pending execution: nothing more of it runs. */
  async reject(id: string, principal: Principal, reason = ""): Promise<ExecutionRecord> {
    await this.store.write(async (tx, emit) => {
      const e = await lockExecution(tx, id);
      this.assertPendingApproval(e, "reject");
      const who = `${principal.kind}:${principal.name}`;
      const waiting = e.steps.find((s) => s.state === "waiting_approval");
      if (waiting) {
        emit(
          await transitionStep(tx, id, waiting.index, waiting.state, "failed", {
            message: `rejected by ${who}`,
          }),
        );
      }
      emit(
        await transitionExecution(tx, e, "rejected", `rejected by ${who}${reason ? `: ${reason}` : ""}`, {
          approvalExpiresAt: null,
          data: { by: who },
        }),
      );
      await releaseAssets(tx, id);
    });
    return getExecution(this.store.read, id);
  }

  private assertPendingApproval(e: ExecutionRecord, action: string): void {
    if (e.state !== "pending_approval") {
      throw new NovaError(
        "NOVA_ILLEGAL_STATE",
        `Cannot ${action} execution ${e.id}: it is ${e.state}, not pending_approval.`,
        {
          details: { execution: e.id, state: e.state, action },
        },
      );
    }
  }

  /** Retries a failed, partial or timed-out execution from the step it stopped at. */
  async retry(id: string): Promise<ExecutionRecord> {
    await this.store.write(async (tx, emit) => {
      // Lock the job before the execution: the runner's fenced writes take them in that
      // order, so a retry racing an attempt's last write waits instead of deadlocking.
      const seen = await getExecution(tx, id);
      const job = seen.jobId === null ? undefined : await lockJob(tx, seen.jobId);
      const e = await lockExecution(tx, id);
      if (e.jobId !== seen.jobId) throw stateChanged(EXECUTION.name, `execution ${id}`, seen.state, "queued");
      if (!RETRYABLE_STATES.includes(e.state)) {
        throw new NovaError(
          "NOVA_ILLEGAL_STATE",
          `Cannot retry execution ${id}: it is ${e.state}. Only ${RETRYABLE_STATES.join(", ")} executions can be retried.`,
          { details: { execution: id, state: e.state, retryable: RETRYABLE_STATES } },
        );
      }
      await resetSteps(tx, id, e.currentStep);
      await clearRunLimits(tx, id);
      let jobId = e.jobId;
      if (job?.state === "dead") await requeueDeadJob(tx, job.id);
      else jobId = await this.enqueue(tx, id, e.plan, e.sla);
      emit(
        await transitionExecution(tx, e, "queued", `retried by an operator from step ${e.currentStep + 1}`, {
          ...(jobId === null ? {} : { jobId }),
        }),
      );
    });
    this.wake?.wakeJobs(EXECUTION_QUEUE);
    return getExecution(this.store.read, id);
  }

  /** The dead-letter queue with each entry's execution. */
  async deadLetters(): Promise<DeadLetter[]> {
    const jobs = await listDeadJobs(this.store.read);
    const ids = jobs.map((j) => j.payload.executionId).filter((x): x is string => typeof x === "string");
    const rows = await executionSummaries(this.store.read, ids);
    const byId = new Map(rows.map((r) => [r.id, r]));
    return jobs.map((job) => ({
      job,
      execution:
        typeof job.payload.executionId === "string" ? (byId.get(job.payload.executionId) ?? null) : null,
    }));
  }

  /** Requeues a dead job: an execution's goes through retry (steps reset, state queued). */
  async requeue(jobId: number): Promise<DeadLetter> {
    const job = await getJob(this.store.read, jobId);
    if (job?.state !== "dead") {
      throw new NovaError(
        "NOVA_NOT_FOUND",
        `Job ${jobId} is not in the dead-letter queue. See: novacron dlq list`,
        {
          details: { job: jobId, state: job?.state ?? null },
        },
      );
    }
    const execId = typeof job.payload.executionId === "string" ? job.payload.executionId : undefined;
    if (execId && job.queue === EXECUTION_QUEUE) await this.retry(execId);
    else {
      await this.store.write((tx) => requeueDeadJob(tx, jobId));
      this.wake?.wakeJobs(job.queue);
    }
    const after = (await getJob(this.store.read, jobId))!;
    const e = execId ? await getExecution(this.store.read, execId) : undefined;
    return { job: after, execution: e ? { id: e.id, name: e.name, state: e.state } : null };
  }

  /** Records on their executions that the reaper took jobs back from dead workers. */
  async onReaped(jobs: ReapedJob[]): Promise<void> {
    for (const job of jobs) {
      const id = job.payload.executionId;
      if (job.queue !== EXECUTION_QUEUE || typeof id !== "string") continue;
      await this.store
        .write(async (tx, emit) => {
          const e = await lockExecution(tx, id);
          if (e.state !== "running") return;
          const why = `worker ${job.lockedBy} stopped renewing its lease (crashed, killed or cut off)`;
          if (job.state === "dead") {
            const anyDone = e.steps.some((s) => s.state === "completed");
            emit(
              await transitionExecution(tx, e, anyDone ? "partial" : "failed", `${why}; no attempts left`),
            );
            await releaseAssets(tx, id);
          } else {
            emit(
              await transitionExecution(tx, e, "queued", `${why}; retrying (attempt ${job.attempts + 1})`),
            );
          }
        })
        .catch(() => {});
    }
  }

  /** Times out executions whose approval window passed. */
  async expireApprovals(): Promise<number> {
    return this.store.write(async (tx, emit) => {
      const expired = await expiredApprovals(tx);
      for (const row of expired) {
        const e = await getExecution(tx, row.id);
        const waiting = e.steps.find((s) => s.state === "waiting_approval");
        if (waiting) {
          emit(
            await transitionStep(tx, e.id, waiting.index, waiting.state, "timed_out", {
              message: "approval expired",
            }),
          );
        }
        emit(
          await transitionExecution(tx, e, "timed_out", "approval expired: nobody approved it in time", {
            data: { limit: "approval" },
          }),
        );
        await releaseAssets(tx, e.id);
      }
      return expired.length;
    });
  }

  /** Waits until the execution ends or waits for approval (immediate mode), up to `timeoutMs`. */
  async waitSettled(id: string, timeoutMs: number): Promise<ExecutionRecord> {
    const settled = (s: string) => FINAL_STATES.includes(s as never) || s === "pending_approval";
    return new Promise((resolve, reject) => {
      let done = false;
      const check = async () => {
        if (done) return;
        try {
          const e = await getExecution(this.store.read, id);
          if (settled(e.state) || Date.now() >= deadline) finish(e);
        } catch (err) {
          finish(undefined, err);
        }
      };
      const deadline = Date.now() + timeoutMs;
      const off = this.store.bus.subscribe((ev) => {
        if (ev.resourceId === id && ev.type === "execution.state") void check();
      });
      const poll = setInterval(() => void check(), 500);
      const finish = (e?: ExecutionRecord, err?: unknown) => {
        if (done) return;
        done = true;
        off();
        clearInterval(poll);
        if (e) resolve(e);
        else reject(err);
      };
      void check();
    });
  }
}
