-- The execution system (issue: execution system). A generic job queue (exec_jobs) that
-- workers claim with FOR UPDATE SKIP LOCKED under heartbeated, fenced leases; executions
-- (plans of ordered steps) that run as jobs of the 'execution' queue; per-asset mutex
-- leases; idempotency keys; encrypted secrets; masked execution logs.

CREATE TABLE exec_jobs (
  id                bigserial PRIMARY KEY,
  queue             text NOT NULL,
  payload           jsonb NOT NULL DEFAULT '{}'::jsonb,
  -- 1 (lowest) .. 10 (highest); claimed highest first, then oldest.
  priority          smallint NOT NULL DEFAULT 5 CHECK (priority BETWEEN 1 AND 10),
  state             text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'completed', 'dead')),
  run_at            timestamptz NOT NULL DEFAULT now(),
  attempts          integer NOT NULL DEFAULT 0,
  max_attempts      integer NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
  -- The lease: who holds the job and until when. Every change a worker makes is fenced by
  -- (locked_by, attempts), so a worker whose lease was reaped cannot touch the new attempt.
  locked_by         text,
  lease_expires_at  timestamptz,
  lease_ms          integer NOT NULL DEFAULT 15000 CHECK (lease_ms >= 100),
  last_error        jsonb,
  created_at        timestamptz NOT NULL DEFAULT now(),
  started_at        timestamptz,
  finished_at       timestamptz
);
-- The claim query's index: only ready work, in claim order.
CREATE INDEX exec_jobs_ready_idx ON exec_jobs (queue, priority DESC, run_at, id) WHERE state = 'queued';
CREATE INDEX exec_jobs_lease_idx ON exec_jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX exec_jobs_dead_idx ON exec_jobs (queue, finished_at) WHERE state = 'dead';

CREATE TABLE executions (
  id                uuid PRIMARY KEY,
  name              text NOT NULL DEFAULT '',
  tenant            text NOT NULL DEFAULT 'default',
  -- Who submitted it: re-checked at execution time (RBAC check point, src/exec/rbac.ts).
  actor_kind        text NOT NULL,
  actor_id          text NOT NULL,
  actor_name        text NOT NULL DEFAULT '',
  plan              jsonb NOT NULL,
  sla_class         text NOT NULL CHECK (sla_class IN ('fast', 'medium', 'long')),
  mode              text NOT NULL CHECK (mode IN ('immediate', 'background')),
  priority          smallint NOT NULL DEFAULT 5 CHECK (priority BETWEEN 1 AND 10),
  state             text NOT NULL CHECK (state IN ('pending_approval', 'approved', 'rejected', 'queued', 'running', 'completed', 'failed', 'cancelled', 'timed_out', 'partial')),
  state_reason      text NOT NULL DEFAULT '',
  -- Assets the plan acts on, normalised ("vm:<uuid>", "host:<uuid>", "url:<url>"), sorted:
  -- the order mutex leases are taken in.
  assets            text[] NOT NULL DEFAULT '{}',
  idempotency_key   text,
  job_id            bigint,
  -- Step index the run is at (or stopped at).
  current_step      integer NOT NULL DEFAULT 0,
  cancel_requested  boolean NOT NULL DEFAULT false,
  approval_expires_at timestamptz,
  deadline_at       timestamptz,
  created_at        timestamptz NOT NULL DEFAULT now(),
  started_at        timestamptz,
  finished_at       timestamptz,
  updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX executions_state_idx ON executions (state);
CREATE INDEX executions_approval_idx ON executions (approval_expires_at) WHERE state = 'pending_approval';

CREATE TABLE execution_steps (
  execution_id  uuid NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
  idx           integer NOT NULL,
  kind          text NOT NULL,
  name          text NOT NULL DEFAULT '',
  state         text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running', 'completed', 'failed', 'cancelled', 'timed_out', 'waiting_approval', 'skipped')),
  attempts      integer NOT NULL DEFAULT 0,
  progress_pct  real NOT NULL DEFAULT 0,
  message       text NOT NULL DEFAULT '',
  -- What a step saved to resume after a crash (e.g. the migration id it started).
  checkpoint    jsonb NOT NULL DEFAULT '{}'::jsonb,
  result        jsonb NOT NULL DEFAULT '{}'::jsonb,
  error         jsonb,
  started_at    timestamptz,
  finished_at   timestamptz,
  PRIMARY KEY (execution_id, idx)
);

-- Masked log lines (src/exec/masker.ts runs on every line before it gets here).
CREATE TABLE execution_logs (
  id            bigserial PRIMARY KEY,
  execution_id  uuid NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
  step_idx      integer,
  at            timestamptz NOT NULL DEFAULT now(),
  level         text NOT NULL DEFAULT 'info',
  message       text NOT NULL
);
CREATE INDEX execution_logs_exec_idx ON execution_logs (execution_id, id);

-- A duplicate submission within the window returns the existing execution.
CREATE TABLE exec_idempotency (
  key           text PRIMARY KEY,
  execution_id  uuid NOT NULL,
  expires_at    timestamptz NOT NULL
);

-- Per-asset mutex leases, held by one execution at a time and renewed with its job lease.
CREATE TABLE exec_asset_locks (
  asset         text PRIMARY KEY,
  execution_id  uuid NOT NULL,
  holder        text NOT NULL,
  acquired_at   timestamptz NOT NULL DEFAULT now(),
  expires_at    timestamptz NOT NULL
);
CREATE INDEX exec_asset_locks_exec_idx ON exec_asset_locks (execution_id);

-- Secrets referenced by steps as ${secret:NAME}: AES-256-GCM, never stored in clear.
CREATE TABLE exec_secrets (
  name        text PRIMARY KEY,
  iv          text NOT NULL,
  tag         text NOT NULL,
  ciphertext  text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
