-- Execution system, second part (issue: execution system): per-step asset mutexes,
-- explicit token grants (self-approval needs executions:approve-own), and what the pruner
-- needs.

-- The assets each step acts on (normalised like executions.assets). With lock_scope
-- 'step' a worker holds a step's assets (plus the plan's own `assets`) only while that
-- step runs; with 'execution' it holds all of executions.assets for the whole run.
-- Executions submitted before this migration have no per-step lists: they keep the
-- whole-run lock they were submitted with.
ALTER TABLE execution_steps ADD COLUMN assets text[] NOT NULL DEFAULT '{}';
ALTER TABLE executions ADD COLUMN lock_scope text NOT NULL DEFAULT 'execution'
  CHECK (lock_scope IN ('step', 'execution'));

-- Permissions granted to a token beyond those of its kind (RBAC roles replace this later).
-- Today only executions:approve-own: approving an execution one submitted oneself.
ALTER TABLE api_tokens ADD COLUMN grants text[] NOT NULL DEFAULT '{}';

-- The pruner deletes finished executions oldest first, and idempotency keys past their
-- window; both scans stay on an index however long the history grows.
CREATE INDEX executions_finished_idx ON executions (finished_at)
  WHERE state IN ('completed', 'cancelled', 'rejected');
CREATE INDEX exec_idempotency_expiry_idx ON exec_idempotency (expires_at);
