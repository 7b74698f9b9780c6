-- Load figures and the rebalancer (issue 17, item 2; docs/placement.md "Rebalancing").
-- The CPU each host's VMs used, as its agent reports it with heartbeats, kept as samples
-- at most one per sampling interval per host and for an hour: the rebalancer averages
-- them over its window, placement predicts a host's load from them.
CREATE TABLE host_load_samples (
  host_id       uuid NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
  at            timestamptz NOT NULL DEFAULT now(),
  -- Cores used by the host's VMs over the agent's trailing window (~10 s).
  cpu_cores     real NOT NULL CHECK (cpu_cores >= 0),
  -- The host's vCPUs when sampled, so utilization stays right if it changes.
  vcpus         integer NOT NULL CHECK (vcpus > 0),
  -- Each VM's cores: {"<vm id>": cores}.
  vm_cpu_cores  jsonb NOT NULL DEFAULT '{}'::jsonb,
  PRIMARY KEY (host_id, at)
);

-- The rebalancer's settings: one row, off by default, shared by every server replica.
CREATE TABLE rebalancer_settings (
  id               integer PRIMARY KEY CHECK (id = 1),
  enabled          boolean NOT NULL DEFAULT false,
  threshold        real NOT NULL DEFAULT 0.25 CHECK (threshold > 0 AND threshold <= 1),
  min_utilization  real NOT NULL DEFAULT 0.5 CHECK (min_utilization >= 0 AND min_utilization <= 1),
  hold_ms          integer NOT NULL DEFAULT 300000 CHECK (hold_ms >= 0),
  margin           real NOT NULL DEFAULT 0.1 CHECK (margin > 0 AND margin <= 1),
  cooldown_ms      integer NOT NULL DEFAULT 1800000 CHECK (cooldown_ms >= 0),
  max_per_host     integer NOT NULL DEFAULT 1 CHECK (max_per_host BETWEEN 1 AND 16),
  max_per_cluster  integer NOT NULL DEFAULT 2 CHECK (max_per_cluster BETWEEN 1 AND 256),
  window_ms        integer NOT NULL DEFAULT 60000 CHECK (window_ms BETWEEN 1000 AND 3600000),
  updated_by       text NOT NULL DEFAULT '',
  updated_at       timestamptz NOT NULL DEFAULT now()
);
INSERT INTO rebalancer_settings (id) VALUES (1);
