/**
 * Wire types of the execution system: plans (what `novacron exec submit` sends, from YAML
 * or JSON), executions with their steps, logs, the dead-letter queue and secrets.
 */
import { type Static, Type } from "@sinclair/typebox";
import { EXECUTION } from "../../states/execution.js";
import { STEP } from "../../states/step.js";
import { Uuid } from "./common.js";
import { stateUnion } from "./state-schema.js";

const StepBase = {
  name: Type.Optional(Type.String({ maxLength: 200, description: "Shown in logs and progress" })),
  timeoutSeconds: Type.Optional(
    Type.Integer({ minimum: 1, maximum: 7 * 86_400, description: "Overrides the SLA class's step limit" }),
  ),
};

const VmTargets = {
  vm: Type.Optional(Type.String({ minLength: 1, description: "VM name or id" })),
  vms: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1, maxItems: 1000 })),
};

/** start/stop/restart: one or more VMs, one after the other; waits until each got there. */
export const VmPowerStep = Type.Object(
  {
    kind: Type.Union([Type.Literal("vm.start"), Type.Literal("vm.stop"), Type.Literal("vm.restart")]),
    ...StepBase,
    ...VmTargets,
  },
  { additionalProperties: false },
);

/** Live-migrates VMs (the migration orchestration), waiting for each to end. */
export const VmMigrateStep = Type.Object(
  {
    kind: Type.Literal("vm.migrate"),
    ...StepBase,
    ...VmTargets,
    targetHost: Type.Optional(Type.String({ minLength: 1 })),
  },
  { additionalProperties: false },
);

/** Checks that the VM's serial console shows a line matching `pattern` within the time limit. */
export const VmConsoleCheckStep = Type.Object(
  {
    kind: Type.Literal("vm.console-check"),
    ...StepBase,
    ...VmTargets,
    pattern: Type.String({ minLength: 1, maxLength: 500, description: "JavaScript regular expression" }),
    lines: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000, description: "Default 200" })),
    since: Type.Optional(
      Type.Union([Type.Literal("any"), Type.Literal("step")], {
        description:
          "any (default): any of the last `lines` lines, earlier boots included; step: only lines printed after the step started",
      }),
    ),
  },
  { additionalProperties: false },
);

/** Calls an external automation service. */
export const HttpStep = Type.Object(
  {
    kind: Type.Literal("http"),
    ...StepBase,
    url: Type.String({
      pattern: "^https?://",
      description: "May contain secret references (docs/executions.md)",
    }),
    method: Type.Optional(
      Type.Union(
        ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"].map((m) => Type.Literal(m)),
        {
          description: "Default POST",
        },
      ),
    ),
    headers: Type.Optional(Type.Record(Type.String(), Type.String())),
    body: Type.Optional(Type.Unknown({ description: "JSON body (a string is sent as is)" })),
    expectStatus: Type.Optional(
      Type.Array(Type.Integer({ minimum: 100, maximum: 599 }), { minItems: 1, description: "Default: 2xx" }),
    ),
    retries: Type.Optional(Type.Integer({ minimum: 0, maximum: 20, description: "Default 3" })),
    retryBaseMs: Type.Optional(Type.Integer({ minimum: 10, maximum: 60_000, description: "Default 500" })),
    idempotent: Type.Optional(
      Type.Boolean({ description: "Safe to repeat after a crash (default: true for GET/PUT/DELETE/HEAD)" }),
    ),
  },
  { additionalProperties: false },
);

/** Runs a command from the host agent's allowlist. */
export const HostCommandStep = Type.Object(
  {
    kind: Type.Literal("host.command"),
    ...StepBase,
    host: Type.String({ minLength: 1, description: "Host name or id" }),
    command: Type.String({ pattern: "^[a-z0-9][a-z0-9._-]{0,62}$", description: "Allowlisted command name" }),
    args: Type.Optional(Type.Array(Type.String({ maxLength: 4096 }), { maxItems: 64 })),
    idempotent: Type.Optional(
      Type.Boolean({ description: "Safe to run again after a crash (default false)" }),
    ),
  },
  { additionalProperties: false },
);

/** Waits. */
export const WaitStep = Type.Object(
  { kind: Type.Literal("wait"), ...StepBase, seconds: Type.Number({ minimum: 0, maximum: 86_400 }) },
  { additionalProperties: false },
);

/** Pauses until an approver approves (or rejects; or the approval window passes). */
export const ApprovalStep = Type.Object(
  {
    kind: Type.Literal("approval"),
    ...StepBase,
    message: Type.Optional(Type.String({ maxLength: 2000 })),
  },
  { additionalProperties: false },
);

/** One step. */
export const PlanStep = Type.Union([
  VmPowerStep,
  VmMigrateStep,
  VmConsoleCheckStep,
  HttpStep,
  HostCommandStep,
  WaitStep,
  ApprovalStep,
]);
export type PlanStep = Static<typeof PlanStep>;

/** SLA class. */
export const SlaClassSchema = Type.Union([
  Type.Literal("fast"),
  Type.Literal("medium"),
  Type.Literal("long"),
]);
/** SLA classes: how patient an execution is and how hard it retries. */
export type SlaClass = Static<typeof SlaClassSchema>;

/** A plan: ordered steps plus how to run them. */
export const Plan = Type.Object(
  {
    name: Type.Optional(Type.String({ maxLength: 200 })),
    sla: Type.Optional(SlaClassSchema),
    mode: Type.Optional(Type.Union([Type.Literal("immediate"), Type.Literal("background")])),
    priority: Type.Optional(Type.Integer({ minimum: 1, maximum: 10 })),
    tenant: Type.Optional(Type.String({ minLength: 1, maxLength: 63 })),
    approval: Type.Optional(
      Type.Union([Type.Literal("required"), Type.Literal("none")], {
        description: "required: wait for an approver before anything runs",
      }),
    ),
    assets: Type.Optional(
      Type.Array(Type.String({ pattern: "^(vm|host|url):.+" }), {
        description:
          "Extra assets to hold the mutex on (e.g. url:https://lb.example/pool/a): with every step, or for the whole run with lock: execution",
      }),
    ),
    lock: Type.Optional(
      Type.Union([Type.Literal("step"), Type.Literal("execution")], {
        description:
          "step (default): each step holds the mutexes of its assets only while it runs; execution: all the plan's assets are held from the first step to the last",
      }),
    ),
    timeouts: Type.Optional(
      Type.Object(
        {
          executionSeconds: Type.Optional(Type.Integer({ minimum: 1 })),
          approvalSeconds: Type.Optional(Type.Integer({ minimum: 1 })),
        },
        { additionalProperties: false },
      ),
    ),
    steps: Type.Array(PlanStep, { minItems: 1, maxItems: 1000 }),
  },
  { additionalProperties: false },
);
export type Plan = Static<typeof Plan>;

/** `POST /v1/executions`. */
export const ExecutionsPost = Type.Object(
  {
    plan: Plan,
    idempotencyKey: Type.Optional(
      Type.String({ minLength: 1, maxLength: 200, description: "Default: hash of plan + tenant + actor" }),
    ),
    wait: Type.Optional(Type.Boolean({ description: "Reply when it ends (like mode: immediate)" })),
  },
  { additionalProperties: false },
);
export type ExecutionsPost = Static<typeof ExecutionsPost>;

/** Execution states. */
export const ExecStateSchema = stateUnion(EXECUTION);

/** One step's progress and outcome. */
export const ExecutionStep = Type.Object({
  index: Type.Integer(),
  kind: Type.String(),
  name: Type.String(),
  state: stateUnion(STEP),
  attempts: Type.Integer(),
  progressPct: Type.Number(),
  message: Type.String(),
  result: Type.Record(Type.String(), Type.Unknown()),
  error: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()]),
  assets: Type.Array(Type.String(), { description: "The assets this step acts on (its mutexes)" }),
  startedAt: Type.Union([Type.String(), Type.Null()]),
  finishedAt: Type.Union([Type.String(), Type.Null()]),
});
export type ExecutionStep = Static<typeof ExecutionStep>;

/** An execution. */
export const Execution = Type.Object({
  id: Uuid,
  name: Type.String(),
  tenant: Type.String(),
  actor: Type.String({ description: "kind:name of who submitted it" }),
  sla: SlaClassSchema,
  mode: Type.String(),
  priority: Type.Integer(),
  state: ExecStateSchema,
  stateReason: Type.String(),
  assets: Type.Array(Type.String()),
  lock: Type.Union([Type.Literal("step"), Type.Literal("execution")], {
    description:
      "step: each step holds its assets' mutexes while it runs; execution: all of them for the run",
  }),
  currentStep: Type.Integer(),
  cancelRequested: Type.Boolean(),
  attempts: Type.Integer(),
  maxAttempts: Type.Integer(),
  jobId: Type.Union([Type.Integer(), Type.Null()]),
  approvalExpiresAt: Type.Union([Type.String(), Type.Null()]),
  createdAt: Type.String(),
  startedAt: Type.Union([Type.String(), Type.Null()]),
  finishedAt: Type.Union([Type.String(), Type.Null()]),
  steps: Type.Array(ExecutionStep),
  plan: Type.Record(Type.String(), Type.Unknown()),
  duplicate: Type.Optional(Type.Boolean({ description: "True when an idempotent resubmission matched it" })),
  traceId: Type.Optional(
    Type.String({ description: "The OpenTelemetry trace its submission and runs belong to, when traced" }),
  ),
});
export type Execution = Static<typeof Execution>;

/** `GET /v1/executions`. */
export const ExecutionList = Type.Object({ executions: Type.Array(Execution) });
export type ExecutionList = Static<typeof ExecutionList>;

/** One masked log line. */
export const ExecutionLogLine = Type.Object({
  id: Type.Integer(),
  at: Type.String(),
  step: Type.Union([Type.Integer(), Type.Null()]),
  level: Type.String(),
  message: Type.String(),
});
export type ExecutionLogLine = Static<typeof ExecutionLogLine>;

/** `GET /v1/executions/{id}/logs`. */
export const ExecutionLogs = Type.Object({
  lines: Type.Array(ExecutionLogLine),
  state: ExecStateSchema,
  next: Type.Integer({ description: "Pass as ?after= to get the lines after these" }),
});
export type ExecutionLogs = Static<typeof ExecutionLogs>;

/** `POST /v1/executions/{id}/approve|reject|cancel`. */
export const ExecutionDecision = Type.Object(
  { reason: Type.Optional(Type.String({ maxLength: 2000 })) },
  { additionalProperties: false },
);
export type ExecutionDecision = Static<typeof ExecutionDecision>;

/** A dead-letter queue entry. */
export const DlqEntry = Type.Object({
  jobId: Type.Integer(),
  queue: Type.String(),
  executionId: Type.Union([Uuid, Type.Null()]),
  executionName: Type.Union([Type.String(), Type.Null()]),
  executionState: Type.Union([Type.String(), Type.Null()]),
  attempts: Type.Integer(),
  maxAttempts: Type.Integer(),
  lastError: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()]),
  createdAt: Type.String(),
  deadAt: Type.Union([Type.String(), Type.Null()]),
});
export type DlqEntry = Static<typeof DlqEntry>;

/** `GET /v1/dlq`. */
export const DlqList = Type.Object({ entries: Type.Array(DlqEntry) });
export type DlqList = Static<typeof DlqList>;

/** `POST /v1/secrets`: set (or replace) a secret. */
export const SecretPost = Type.Object(
  {
    name: Type.String({ pattern: "^[a-z0-9][a-z0-9._-]{0,62}$" }),
    value: Type.String({ minLength: 4, maxLength: 65_536 }),
  },
  { additionalProperties: false },
);
export type SecretPost = Static<typeof SecretPost>;

/** `GET /v1/secrets`: names only. */
export const SecretList = Type.Object({
  secrets: Type.Array(Type.Object({ name: Type.String(), updatedAt: Type.String() })),
});
export type SecretList = Static<typeof SecretList>;

/** Agent: `POST /agent/v1/commands/run`. */
export const AgentCommandPost = Type.Object(
  {
    command: Type.String({ pattern: "^[a-z0-9][a-z0-9._-]{0,62}$" }),
    args: Type.Array(Type.String({ maxLength: 4096 }), { maxItems: 64, default: [] }),
  },
  { additionalProperties: false },
);
export type AgentCommandPost = Static<typeof AgentCommandPost>;

/** Agent: what a host command did. */
export const AgentCommandResult = Type.Object({
  exitCode: Type.Integer(),
  signal: Type.Union([Type.String(), Type.Null()]),
  stdout: Type.String(),
  stderr: Type.String(),
  durationMs: Type.Number(),
});
export type AgentCommandResult = Static<typeof AgentCommandResult>;
