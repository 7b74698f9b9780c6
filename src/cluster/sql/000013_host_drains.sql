-- Maintenance drain (issue 17, item 3): a durable record per drain of a host, and one entry
-- per VM it moves or reports, so a server restart resumes a drain where it was
-- (states/drain.ts; docs/operations.md "Draining a host").
CREATE TABLE host_drains (
  id                uuid PRIMARY KEY,
  -- A drain belongs to its host; removing the host removes its drain history.
  host_id           uuid NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
  host_name         text NOT NULL,
  state             text NOT NULL CHECK (state IN ('draining', 'drained', 'incomplete', 'cancelled')),
  state_reason      text NOT NULL DEFAULT '',
  -- How many live migrations the drain keeps under way at once.
  concurrency       integer NOT NULL CHECK (concurrency BETWEEN 1 AND 4),
  cancel_requested  boolean NOT NULL DEFAULT false,
  requested_by      text NOT NULL DEFAULT '',
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  finished_at       timestamptz
);
-- One drain under way per host.
CREATE UNIQUE INDEX host_drains_one_active_idx ON host_drains (host_id) WHERE state = 'draining';
CREATE INDEX host_drains_host_idx ON host_drains (host_id, created_at DESC);

CREATE TABLE host_drain_vms (
  drain_id          uuid NOT NULL REFERENCES host_drains (id) ON DELETE CASCADE,
  -- The report outlives the VM: keep its name, drop the link when it is deleted.
  vm_id             uuid REFERENCES vms (id) ON DELETE SET NULL,
  vm_name           text NOT NULL,
  state             text NOT NULL CHECK (state IN ('waiting', 'moving', 'moved', 'failed', 'left', 'cancelled', 'gone')),
  -- The live migration that moves (or moved, or failed to move) it; no foreign key: the
  -- report stays readable whatever happens to migration history.
  migration_id      uuid,
  target_host_name  text,
  -- Why it could not move: a NOVA_ code and a message (failed, left, gone).
  code              text,
  reason            text NOT NULL DEFAULT '',
  position          integer NOT NULL,
  updated_at        timestamptz NOT NULL DEFAULT now(),
  -- VM names are unique in a cluster; position keeps the report in the order VMs were found.
  PRIMARY KEY (drain_id, vm_name)
);
