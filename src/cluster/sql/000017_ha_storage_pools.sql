-- HA restart with fencing, and the shared storage pools it needs (docs/operations.md,
-- "High availability").

-- A directory every host mounts at the same path (NFS or the like). The pool's id is
-- written in <path>/.novacron-pool, so a host with an empty, unmounted directory at that
-- path does not count as seeing the pool.
CREATE TABLE storage_pools (
  id          uuid PRIMARY KEY,
  name        text NOT NULL UNIQUE,
  path        text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);

-- Which hosts see which pool (the marker read back with the pool's id), as their agents
-- last reported.
CREATE TABLE host_storage_pools (
  host_id  uuid NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
  pool_id  uuid NOT NULL REFERENCES storage_pools (id) ON DELETE CASCADE,
  seen_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (host_id, pool_id)
);

-- A VM's disk lives in its pool (NULL: on its host's local image store) and `ha` says
-- whether the server restarts it elsewhere when its host dies. `ha_moved_from_host_id` is
-- the host an HA restart took it from: that host's leftover copy is released (never the
-- pool disk) when its agent reports it again.
ALTER TABLE vms ADD COLUMN storage_pool_id uuid REFERENCES storage_pools (id);
ALTER TABLE vms ADD COLUMN ha text NOT NULL DEFAULT 'none' CHECK (ha IN ('none', 'restart'));
ALTER TABLE vms ADD COLUMN ha_moved_from_host_id uuid;
ALTER TABLE vms ADD CONSTRAINT vms_ha_needs_pool CHECK (ha = 'none' OR storage_pool_id IS NOT NULL);
