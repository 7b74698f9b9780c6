-- ACP (issue 15, docs/federation.md §10): every VM is owned by one cluster at an epoch,
-- and ownership moves between clusters only through a hand-off recorded on both sides.

-- owner_cluster_id NULL: this cluster owns the VM (every VM created here); otherwise the
-- cluster that owns it (released to, or not yet handed to this one). owner_epoch counts
-- the VM's owners: 1 where it was created, +1 per hand-off.
ALTER TABLE vms ADD COLUMN owner_cluster_id uuid;
ALTER TABLE vms ADD COLUMN owner_epoch integer NOT NULL DEFAULT 1 CHECK (owner_epoch > 0);

-- A VM arriving from another cluster waits `arriving` until the hand-off commits.
ALTER TABLE vms DROP CONSTRAINT vms_state_check;
ALTER TABLE vms ADD CONSTRAINT vms_state_check CHECK (state IN ('pending', 'scheduled', 'starting', 'running', 'stopping', 'stopped', 'failed', 'deleting', 'migrating', 'arriving'));

-- The source side of a hand-off: this cluster owned the VM at from_epoch.
CREATE TABLE acp_outgoing (
  id                 uuid PRIMARY KEY,
  vm_id              uuid NOT NULL,
  vm_name            text NOT NULL,
  migration_id       uuid,
  target_cluster_id  uuid NOT NULL,
  from_epoch         integer NOT NULL CHECK (from_epoch > 0),
  state              text NOT NULL CHECK (state IN ('preparing', 'transferring', 'released', 'completed', 'aborting', 'aborted', 'reclaimed')),
  reason             text NOT NULL DEFAULT '',
  -- The signed statements exchanged, by kind (prepare, prepared, release, owned, returned,
  -- abort, aborted): what either side can show the other, or an operator, later.
  statements         jsonb NOT NULL DEFAULT '{}',
  created_at         timestamptz NOT NULL DEFAULT now(),
  state_changed_at   timestamptz NOT NULL DEFAULT now(),
  -- When everything its state calls for was done (a final state's copy removed or
  -- resumed): until then the hand-off loop keeps visiting it, final or not.
  settled_at         timestamptz
);
-- One hand-off at a time per VM.
CREATE UNIQUE INDEX acp_outgoing_active_vm ON acp_outgoing (vm_id)
  WHERE state IN ('preparing', 'transferring', 'released', 'aborting');

-- The destination side: source_cluster_id owned the VM at from_epoch and offers it at
-- from_epoch + 1.
CREATE TABLE acp_incoming (
  id                 uuid PRIMARY KEY,
  vm_id              uuid NOT NULL,
  vm_name            text NOT NULL,
  source_cluster_id  uuid NOT NULL,
  from_epoch         integer NOT NULL CHECK (from_epoch > 0),
  state              text NOT NULL CHECK (state IN ('prepared', 'resuming', 'owned', 'returned', 'aborted')),
  reason             text NOT NULL DEFAULT '',
  host_id            uuid,
  statements         jsonb NOT NULL DEFAULT '{}',
  created_at         timestamptz NOT NULL DEFAULT now(),
  state_changed_at   timestamptz NOT NULL DEFAULT now(),
  settled_at         timestamptz
);
CREATE UNIQUE INDEX acp_incoming_active_vm ON acp_incoming (vm_id) WHERE state IN ('prepared', 'resuming');

-- A migration to another cluster: the destination is a cluster (and, once it chose or was
-- told, a host name there) instead of one of this cluster's hosts. Its hand-off has the
-- migration's id.
ALTER TABLE migrations ALTER COLUMN target_host_id DROP NOT NULL;
ALTER TABLE migrations ADD COLUMN target_cluster_id uuid;
ALTER TABLE migrations ADD COLUMN target_cluster_name text;
ALTER TABLE migrations ADD COLUMN target_host_name text;
ALTER TABLE migrations ADD CONSTRAINT migrations_target_check
  CHECK ((target_host_id IS NOT NULL) <> (target_cluster_id IS NOT NULL));
