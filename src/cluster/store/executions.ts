/**
 * The executions, execution_steps and execution_logs tables. Every state change goes
 * through `transitionExecution`, which checks the state machine (states/execution.ts) and
 * appends the `execution.state` event in the same transaction. Text written here must
 * already be masked (exec/masker.ts): this module stores what it is given.
 */

import { randomUUID } from "node:crypto";
import type { ClusterEvent } from "../../api/types/events.js";
import type {
  Execution,
  ExecutionLogLine,
  ExecutionStep,
  Plan,
  SlaClass,
} from "../../api/types/executions.js";
import { NovaError } from "../../lib/errors.js";
import { stateChanged } from "../../lib/state-machine.js";
import { traceIdOf } from "../../lib/tracing.js";
import { assertExecTransition, EXECUTION, type ExecState } from "../../states/execution.js";
import { STEP, STEP_RESETTABLE, type StepState } from "../../states/step.js";
import type { Queryable, ReadQueryable } from "./db.js";
import { appendEvent } from "./events.js";

interface ExecRow {
  id: string;
  name: string;
  tenant: string;
  actor_kind: string;
  actor_id: string;
  actor_name: string;
  plan: Plan;
  sla_class: SlaClass;
  mode: "immediate" | "background";
  priority: number;
  state: ExecState;
  state_reason: string;
  assets: string[];
  lock_scope: "step" | "execution";
  trace_parent: string | null;
  idempotency_key: string | null;
  job_id: number | null;
  current_step: number;
  cancel_requested: boolean;
  approval_expires_at: Date | null;
  deadline_at: Date | null;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  job_attempts: number | null;
  job_max_attempts: number | null;
}

interface StepRow {
  execution_id: string;
  idx: number;
  kind: string;
  name: string;
  state: StepState;
  attempts: number;
  progress_pct: number;
  message: string;
  checkpoint: Record<string, unknown>;
  result: Record<string, unknown>;
  error: Record<string, unknown> | null;
  assets: string[];
  started_at: Date | null;
  finished_at: Date | null;
}

/** A step with its resume checkpoint. */
export interface StepRecord extends ExecutionStep {
  state: StepState;
  checkpoint: Record<string, unknown>;
}

/** An execution with what the runner needs beyond the API view. */
export interface ExecutionRecord extends Omit<Execution, "steps"> {
  state: ExecState;
  lock: LockScope;
  sla: SlaClass;
  plan: Plan;
  actorKind: string;
  actorId: string;
  actorName: string;
  deadlineAt: string | null;
  /** The W3C traceparent of the request that submitted it (null: not traced). */
  traceParent: string | null;
  steps: StepRecord[];
}

/**
 * How long an execution holds its asset mutexes: "step" — each step's assets (plus the
 * plan's own `assets`) only while that step runs; "execution" — all of them for the run.
 */
export type LockScope = "step" | "execution";

const iso = (d: Date | null) => (d ? new Date(d).toISOString() : null);

const SELECT = `SELECT e.*, j.attempts AS job_attempts, j.max_attempts AS job_max_attempts
  FROM executions e LEFT JOIN exec_jobs j ON j.id = e.job_id`;

function toStep(r: StepRow): StepRecord {
  return {
    index: r.idx,
    kind: r.kind,
    name: r.name,
    state: r.state,
    attempts: r.attempts,
    progressPct: Number(r.progress_pct),
    message: r.message,
    checkpoint: r.checkpoint,
    result: r.result,
    error: r.error,
    assets: r.assets ?? [],
    startedAt: iso(r.started_at),
    finishedAt: iso(r.finished_at),
  };
}

function toExecution(r: ExecRow, steps: StepRecord[]): ExecutionRecord {
  return {
    id: r.id,
    name: r.name,
    tenant: r.tenant,
    actor: `${r.actor_kind}:${r.actor_name || r.actor_id}`,
    actorKind: r.actor_kind,
    actorId: r.actor_id,
    actorName: r.actor_name,
    sla: r.sla_class,
    mode: r.mode,
    priority: r.priority,
    state: r.state,
    stateReason: r.state_reason,
    assets: r.assets,
    lock: r.lock_scope,
    currentStep: r.current_step,
    cancelRequested: r.cancel_requested,
    attempts: r.job_attempts ?? 0,
    maxAttempts: r.job_max_attempts ?? 0,
    jobId: r.job_id === null ? null : Number(r.job_id),
    approvalExpiresAt: iso(r.approval_expires_at),
    deadlineAt: iso(r.deadline_at),
    createdAt: new Date(r.created_at).toISOString(),
    startedAt: iso(r.started_at),
    finishedAt: iso(r.finished_at),
    plan: r.plan,
    traceParent: r.trace_parent,
    steps,
  };
}

/** The API view. */
export function publicExecution(e: ExecutionRecord): Execution {
  const { actorKind: _k, actorId: _i, actorName: _n, deadlineAt: _d, traceParent, steps, ...rest } = e;
  const traceId = traceIdOf(traceParent);
  return { ...rest, ...(traceId ? { traceId } : {}), steps: steps.map(({ checkpoint: _c, ...s }) => s) };
}

/** What a new execution is made of (validated and normalised by the service). */
export interface NewExecution {
  name: string;
  tenant: string;
  actor: { kind: string; id: string; name: string };
  plan: Plan;
  sla: SlaClass;
  mode: "immediate" | "background";
  priority: number;
  state: "pending_approval" | "queued";
  /** Every asset of the plan, sorted (the whole-run lock set, and what `assets` shows). */
  assets: string[];
  /** Each step's own assets, sorted (the per-step lock sets). */
  stepAssets: string[][];
  lock: LockScope;
  idempotencyKey: string | null;
  approvalExpiresAt: Date | null;
  /** The trace the run continues (lib/tracing.ts currentTraceparent). */
  traceParent?: string | null;
}

/** Inserts an execution and its steps; returns its id and creation event. */
export async function insertExecution(
  q: Queryable,
  e: NewExecution,
  id: string = randomUUID(),
): Promise<{ id: string; event: ClusterEvent }> {
  await q.query(
    `INSERT INTO executions (id, name, tenant, actor_kind, actor_id, actor_name, plan, sla_class, mode, priority,
       state, state_reason, assets, idempotency_key, approval_expires_at, lock_scope, trace_parent)
     VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`,
    [
      id,
      e.name,
      e.tenant,
      e.actor.kind,
      e.actor.id,
      e.actor.name,
      JSON.stringify(e.plan),
      e.sla,
      e.mode,
      e.priority,
      e.state,
      e.state === "pending_approval" ? "waiting for approval before it runs" : "submitted",
      e.assets,
      e.idempotencyKey,
      e.approvalExpiresAt,
      e.lock,
      e.traceParent ?? null,
    ],
  );
  // Per-step asset lists travel as JSON text: unnest() flattens a two-dimensional array.
  await q.query(
    `INSERT INTO execution_steps (execution_id, idx, kind, name, assets)
     SELECT $1, s.ord - 1, s.kind, s.name, ARRAY(SELECT jsonb_array_elements_text(s.assets::jsonb))
     FROM unnest($2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS s(kind, name, assets, ord)`,
    [
      id,
      e.plan.steps.map((s) => s.kind),
      e.plan.steps.map((s, i) => s.name ?? `${i + 1}: ${s.kind}`),
      e.plan.steps.map((_, i) => JSON.stringify(e.stepAssets[i] ?? [])),
    ],
  );
  const event = await appendEvent(q, {
    type: "execution.created",
    resourceType: "execution",
    resourceId: id,
    data: {
      name: e.name,
      state: e.state,
      steps: e.plan.steps.length,
      actor: `${e.actor.kind}:${e.actor.name}`,
    },
  });
  return { id, event };
}

/** An execution by id; NOVA_NOT_FOUND otherwise. */
export function getExecution(q: ReadQueryable, id: string): Promise<ExecutionRecord> {
  return readExecution(q, id, false);
}

/** `getExecution` that also locks the execution's row until the transaction ends. */
export function lockExecution(tx: Queryable, id: string): Promise<ExecutionRecord> {
  return readExecution(tx, id, true);
}

async function readExecution(q: ReadQueryable, id: string, forUpdate: boolean): Promise<ExecutionRecord> {
  const valid = /^[0-9a-f-]{36}$/i.test(id);
  const { rows } = valid
    ? await q.query<ExecRow>(`${SELECT} WHERE e.id = $1${forUpdate ? " FOR UPDATE OF e" : ""}`, [id])
    : { rows: [] };
  if (!rows[0]) {
    throw new NovaError(
      "NOVA_NOT_FOUND",
      `Execution ${id} not found. List executions with: novacron exec list`,
      {
        details: { execution: id },
      },
    );
  }
  const steps = await q.query<StepRow>("SELECT * FROM execution_steps WHERE execution_id = $1 ORDER BY idx", [
    id,
  ]);
  return toExecution(rows[0], steps.rows.map(toStep));
}

/** Executions, newest first. */
export async function listExecutions(
  q: ReadQueryable,
  filter: { state?: string; limit?: number } = {},
): Promise<ExecutionRecord[]> {
  const { rows } = await q.query<ExecRow>(
    `${SELECT} WHERE ($1::text IS NULL OR e.state = $1) ORDER BY e.created_at DESC LIMIT $2`,
    [filter.state ?? null, filter.limit ?? 100],
  );
  if (rows.length === 0) return [];
  const steps = await q.query<StepRow>(
    "SELECT * FROM execution_steps WHERE execution_id = ANY($1) ORDER BY execution_id, idx",
    [rows.map((r) => r.id)],
  );
  const byExec = new Map<string, StepRecord[]>();
  for (const s of steps.rows) {
    const list = byExec.get(s.execution_id) ?? [];
    list.push(toStep(s));
    byExec.set(s.execution_id, list);
  }
  return rows.map((r) => toExecution(r, byExec.get(r.id) ?? []));
}

/** Extra columns a transition may set. */
export interface TransitionExtra {
  jobId?: number;
  currentStep?: number;
  approvalExpiresAt?: Date | null;
  deadlineAt?: Date;
  startedNow?: boolean;
  /** Extra event data (already masked). */
  data?: Record<string, unknown>;
}

/** What a transition needs to know of an execution: which one, and the state it was read in. */
export interface ExecutionRef {
  id: string;
  state: ExecState;
  name: string;
}

/** The columns a transition sets, as the row holds them after it. */
export interface MovedColumns {
  state: ExecState;
  stateReason: string;
  currentStep: number;
  jobId: number | null;
  approvalExpiresAt: string | null;
  deadlineAt: string | null;
  startedAt: string | null;
  finishedAt: string | null;
}

/** Moves an execution to `to` (checked), recording the event. Text must be masked already. */
export async function transitionExecution(
  q: Queryable,
  e: ExecutionRef,
  to: ExecState,
  reason: string,
  extra: TransitionExtra = {},
): Promise<ClusterEvent> {
  return (await moveExecution(q, e, to, reason, extra)).event;
}

/**
 * `transitionExecution` that also returns the execution as the row is after the move:
 * `e` with the columns the transition set, read back from the row it updated (so a
 * caller moving it again starts from the state the database holds).
 */
export async function moveExecution<E extends ExecutionRef>(
  q: Queryable,
  e: E,
  to: ExecState,
  reason: string,
  extra: TransitionExtra = {},
): Promise<{ event: ClusterEvent; execution: Omit<E, keyof MovedColumns> & MovedColumns }> {
  assertExecTransition(e.id, e.state, to, `move to ${to}`);
  const final = EXECUTION.isFinal(to);
  const { rows } = await q.query<{
    state: ExecState;
    state_reason: string;
    current_step: number;
    job_id: number | null;
    approval_expires_at: Date | null;
    deadline_at: Date | null;
    started_at: Date | null;
    finished_at: Date | null;
  }>(
    `UPDATE executions SET state = $2, state_reason = $3, updated_at = now(),
       job_id = COALESCE($4, job_id),
       current_step = COALESCE($5, current_step),
       approval_expires_at = CASE WHEN $6 THEN $7 ELSE approval_expires_at END,
       deadline_at = COALESCE($8, deadline_at),
       started_at = CASE WHEN $9 AND started_at IS NULL THEN now() ELSE started_at END,
       finished_at = CASE WHEN $10 THEN now() ELSE NULL END
     WHERE id = $1 AND state = $11
     RETURNING state, state_reason, current_step, job_id, approval_expires_at, deadline_at, started_at, finished_at`,
    [
      e.id,
      to,
      reason,
      extra.jobId ?? null,
      extra.currentStep ?? null,
      extra.approvalExpiresAt !== undefined,
      extra.approvalExpiresAt ?? null,
      extra.deadlineAt ?? null,
      extra.startedNow ?? false,
      final,
      e.state,
    ],
  );
  const r = rows[0];
  if (!r) throw stateChanged(EXECUTION.name, `execution ${e.id}`, e.state, to);
  const event = await appendEvent(q, {
    type: "execution.state",
    resourceType: "execution",
    resourceId: e.id,
    data: { name: e.name, from: e.state, to, reason, ...extra.data },
  });
  return {
    event,
    execution: {
      ...e,
      state: r.state,
      stateReason: r.state_reason,
      currentStep: r.current_step,
      jobId: r.job_id === null ? null : Number(r.job_id),
      approvalExpiresAt: iso(r.approval_expires_at),
      deadlineAt: iso(r.deadline_at),
      startedAt: iso(r.started_at),
      finishedAt: iso(r.finished_at),
    },
  };
}

/** Fields a step transition or update may set besides the state. */
export interface StepUpdate {
  progressPct?: number;
  message?: string;
  checkpoint?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: Record<string, unknown> | null;
  attemptStarted?: boolean;
}

/** Updates one step's progress, message, checkpoint or result; its state stays. */
export async function updateStep(
  q: Queryable,
  executionId: string,
  idx: number,
  u: StepUpdate,
): Promise<void> {
  await writeStep(q, executionId, idx, null, u);
}

/**
 * Moves step `idx` from `from` to `to` (checked against states/step.ts) by a
 * compare-and-set on `from`, with the other fields of `u`; returns the step event.
 * NOVA_STATE_CHANGED when the step is no longer `from`.
 */
export async function transitionStep(
  q: Queryable,
  executionId: string,
  idx: number,
  from: StepState,
  to: StepState,
  u: StepUpdate = {},
): Promise<ClusterEvent> {
  const subject = `step ${idx} of execution ${executionId}`;
  STEP.assertTransition(subject, from, to);
  const row = await writeStep(q, executionId, idx, { from, to }, u);
  if (!row) throw stateChanged(STEP.name, subject, from, to);
  return appendEvent(q, {
    type: "execution.step",
    resourceType: "execution",
    resourceId: executionId,
    data: {
      step: idx,
      kind: row.kind,
      name: row.name,
      state: to,
      ...(u.message ? { message: u.message } : {}),
    },
  });
}

async function writeStep(
  q: Queryable,
  executionId: string,
  idx: number,
  move: { from: StepState; to: StepState } | null,
  u: StepUpdate,
): Promise<{ kind: string; name: string } | undefined> {
  const { rows } = await q.query<{ kind: string; name: string }>(
    `UPDATE execution_steps SET
       state = COALESCE($3, state),
       progress_pct = COALESCE($4, progress_pct),
       message = COALESCE($5, message),
       checkpoint = COALESCE($6::jsonb, checkpoint),
       result = COALESCE($7::jsonb, result),
       error = CASE WHEN $8 THEN $9::jsonb ELSE error END,
       attempts = attempts + CASE WHEN $10 THEN 1 ELSE 0 END,
       started_at = CASE WHEN $10 THEN now() ELSE started_at END,
       finished_at = CASE WHEN $3 IS NULL THEN finished_at WHEN $11 THEN now() ELSE NULL END
     WHERE execution_id = $1 AND idx = $2 AND ($12::text IS NULL OR state = $12)
     RETURNING kind, name`,
    [
      executionId,
      idx,
      move?.to ?? null,
      u.progressPct ?? null,
      u.message ?? null,
      u.checkpoint ? JSON.stringify(u.checkpoint) : null,
      u.result ? JSON.stringify(u.result) : null,
      u.error !== undefined,
      u.error ? JSON.stringify(u.error) : null,
      u.attemptStarted ?? false,
      move ? STEP.isFinal(move.to) : false,
      move?.from ?? null,
    ],
  );
  return rows[0];
}

/**
 * Puts the steps from `fromIdx` on that did not complete back to pending (retry): every
 * step whose state may move to pending (states/step.ts).
 */
export async function resetSteps(q: Queryable, executionId: string, fromIdx: number): Promise<void> {
  await q.query(
    `UPDATE execution_steps SET state = 'pending', progress_pct = 0, error = NULL, finished_at = NULL
     WHERE execution_id = $1 AND idx >= $2 AND state = ANY($3::text[])`,
    [executionId, fromIdx, STEP_RESETTABLE],
  );
}

/** Records which queue job runs the execution. */
export async function setExecutionJob(q: Queryable, id: string, jobId: number): Promise<void> {
  await q.query("UPDATE executions SET job_id = $2 WHERE id = $1", [id, jobId]);
}

/** Records the step the execution is at (a step started, or the next one is due). */
export async function setCurrentStep(q: Queryable, id: string, idx: number): Promise<void> {
  await q.query("UPDATE executions SET current_step = $2, updated_at = now() WHERE id = $1", [id, idx]);
}

/**
 * Says why a queued execution waits (e.g. for an asset's mutex) without a state change;
 * a no-op when the reason is already that or the execution is no longer queued.
 */
export async function noteQueuedReason(q: Queryable, id: string, reason: string): Promise<void> {
  await q.query(
    "UPDATE executions SET state_reason = $2, updated_at = now() WHERE id = $1 AND state = 'queued' AND state_reason <> $2",
    [id, reason],
  );
}

/** Clears what the last run left (cancel request, deadline, approval window) before a retry. */
export async function clearRunLimits(q: Queryable, id: string): Promise<void> {
  await q.query(
    "UPDATE executions SET cancel_requested = false, deadline_at = NULL, approval_expires_at = NULL WHERE id = $1",
    [id],
  );
}

/** Id, name and state of each listed execution that exists. */
export async function executionSummaries(
  q: ReadQueryable,
  ids: string[],
): Promise<{ id: string; name: string; state: ExecState }[]> {
  if (ids.length === 0) return [];
  const { rows } = await q.query<{ id: string; name: string; state: ExecState }>(
    "SELECT id, name, state FROM executions WHERE id = ANY($1)",
    [ids],
  );
  return rows;
}

/** Marks cancellation requested. */
export async function setCancelRequested(q: Queryable, id: string): Promise<void> {
  await q.query("UPDATE executions SET cancel_requested = true, updated_at = now() WHERE id = $1", [id]);
}

/** Whether cancellation was requested (read fresh while a step runs). */
export async function isCancelRequested(q: ReadQueryable, id: string): Promise<boolean> {
  const { rows } = await q.query<{ c: boolean }>(
    "SELECT cancel_requested AS c FROM executions WHERE id = $1",
    [id],
  );
  return rows[0]?.c ?? false;
}

/** Appends masked log lines. */
export async function appendLogs(
  q: Queryable,
  executionId: string,
  lines: { step: number | null; level: string; message: string }[],
): Promise<void> {
  if (lines.length === 0) return;
  await q.query(
    `INSERT INTO execution_logs (execution_id, step_idx, level, message)
     SELECT $1, l.step, l.level, l.message FROM unnest($2::int[], $3::text[], $4::text[]) WITH ORDINALITY AS l(step, level, message, ord)
     ORDER BY l.ord`,
    [executionId, lines.map((l) => l.step), lines.map((l) => l.level), lines.map((l) => l.message)],
  );
}

/** Log lines after `afterId`, oldest first. */
export async function listLogs(
  q: ReadQueryable,
  executionId: string,
  afterId = 0,
  limit = 1000,
): Promise<ExecutionLogLine[]> {
  const { rows } = await q.query<{
    id: number;
    at: Date;
    step_idx: number | null;
    level: string;
    message: string;
  }>(
    `SELECT id, at, step_idx, level, message FROM execution_logs WHERE execution_id = $1 AND id > $2
     ORDER BY id LIMIT $3`,
    [executionId, afterId, limit],
  );
  return rows.map((r) => ({
    id: Number(r.id),
    at: new Date(r.at).toISOString(),
    step: r.step_idx,
    level: r.level,
    message: r.message,
  }));
}

/** Executions whose approval window passed (locked, skipping ones another server handles). */
export async function expiredApprovals(
  q: Queryable,
): Promise<{ id: string; name: string; state: ExecState }[]> {
  const { rows } = await q.query<{ id: string; name: string; state: ExecState }>(
    `SELECT id, name, state FROM executions WHERE state = 'pending_approval' AND approval_expires_at < now()
     LIMIT 100 FOR UPDATE SKIP LOCKED`,
  );
  return rows;
}

/** Execution counts by state (metrics). */
export async function countExecutionsByState(q: ReadQueryable): Promise<Record<string, number>> {
  const { rows } = await q.query<{ state: string; n: number }>(
    "SELECT state, count(*)::int AS n FROM executions GROUP BY state",
  );
  return Object.fromEntries(rows.map((r) => [r.state, r.n]));
}
