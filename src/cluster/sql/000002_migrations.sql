-- Live migrations (issue: live migration inside a cluster). A migration row is the
-- durable record of every step, so a server restart can finish or roll back what was in
-- flight. VMs gain the 'migrating' lifecycle state.

ALTER TABLE vms DROP CONSTRAINT vms_state_check;
ALTER TABLE vms ADD CONSTRAINT vms_state_check CHECK (state IN ('pending', 'scheduled', 'starting', 'running', 'stopping', 'stopped', 'failed', 'deleting', 'migrating'));

CREATE TABLE migrations (
  id                uuid PRIMARY KEY,
  -- History outlives the VM: keep its name, drop the link when it is deleted.
  vm_id             uuid REFERENCES vms (id) ON DELETE SET NULL,
  vm_name           text NOT NULL,
  source_host_id    uuid NOT NULL REFERENCES hosts (id),
  target_host_id    uuid NOT NULL REFERENCES hosts (id),
  state             text NOT NULL CHECK (state IN ('queued', 'preparing', 'transferring', 'switching-over', 'completed', 'failed', 'cancelled')),
  state_reason      text NOT NULL DEFAULT '',
  -- What was undone when it failed or was cancelled (e.g. "destination QEMU stopped and its disk removed; VM kept running on a1").
  rollback          text NOT NULL DEFAULT '',
  transport         text NOT NULL DEFAULT 'qemu',
  options           jsonb NOT NULL DEFAULT '{}'::jsonb,
  progress          jsonb NOT NULL DEFAULT '{}'::jsonb,
  result            jsonb NOT NULL DEFAULT '{}'::jsonb,
  cancel_requested  boolean NOT NULL DEFAULT false,
  created_at        timestamptz NOT NULL DEFAULT now(),
  started_at        timestamptz,
  finished_at       timestamptz,
  updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX migrations_vm_idx ON migrations (vm_id);
CREATE INDEX migrations_active_idx ON migrations (state) WHERE state NOT IN ('completed', 'failed', 'cancelled');
