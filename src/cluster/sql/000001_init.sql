-- NovaCron control-plane schema, version 1: one cluster's hosts, images, VMs, events and
-- API tokens. Ids are UUIDs so rows can later be federated between clusters without
-- renumbering. Later features (migrations, executions, federation) add their own tables.

CREATE TABLE cluster_info (
  id          uuid PRIMARY KEY,
  name        text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_tokens (
  id          uuid PRIMARY KEY,
  name        text NOT NULL,
  -- admin: full API; join: may only register agents. RBAC roles slot in here later.
  kind        text NOT NULL CHECK (kind IN ('admin', 'join')),
  token_hash  text NOT NULL UNIQUE,
  created_at  timestamptz NOT NULL DEFAULT now(),
  revoked_at  timestamptz
);

CREATE TABLE hosts (
  id                 uuid PRIMARY KEY,
  name               text NOT NULL UNIQUE,
  agent_url          text NOT NULL,
  -- The host credential: agents authenticate heartbeats with it and the server presents
  -- it when it calls the agent. Only its hash is needed for the first use, but the server
  -- must present the token itself to the agent, so it is kept (encrypted at rest with the
  -- security work).
  agent_token        text NOT NULL,
  liveness           text NOT NULL DEFAULT 'alive' CHECK (liveness IN ('alive', 'dead')),
  cordoned           boolean NOT NULL DEFAULT false,
  accel              text NOT NULL CHECK (accel IN ('kvm', 'tcg')),
  accel_reason       text NOT NULL DEFAULT '',
  vcpus              integer NOT NULL CHECK (vcpus > 0),
  memory_mib         integer NOT NULL CHECK (memory_mib > 0),
  disk_total_bytes   bigint NOT NULL DEFAULT 0,
  disk_free_bytes    bigint NOT NULL DEFAULT 0,
  agent_version      text NOT NULL DEFAULT '',
  labels             jsonb NOT NULL DEFAULT '{}'::jsonb,
  registered_at      timestamptz NOT NULL DEFAULT now(),
  last_heartbeat_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE images (
  id                  uuid PRIMARY KEY,
  name                text NOT NULL UNIQUE,
  disk_digest         text NOT NULL,
  disk_format         text NOT NULL CHECK (disk_format IN ('qcow2', 'raw')),
  disk_virtual_bytes  bigint NOT NULL,
  kernel_digest       text,
  initrd_digest       text,
  cmdline             text NOT NULL DEFAULT '',
  min_memory_mib      integer NOT NULL DEFAULT 64,
  created_at          timestamptz NOT NULL DEFAULT now()
);

-- Which hosts hold an image's blobs in their image store (hosts share no storage).
CREATE TABLE image_locations (
  image_id     uuid NOT NULL REFERENCES images (id) ON DELETE CASCADE,
  host_id      uuid NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
  imported_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (image_id, host_id)
);

CREATE TABLE vms (
  id                uuid PRIMARY KEY,
  name              text NOT NULL UNIQUE,
  image_id          uuid NOT NULL REFERENCES images (id),
  vcpus             integer NOT NULL CHECK (vcpus > 0),
  memory_mib        integer NOT NULL CHECK (memory_mib > 0),
  kernel_args       text NOT NULL DEFAULT '',
  -- What the user asked for, and where the lifecycle state machine is (vm-state.ts).
  desired_state     text NOT NULL CHECK (desired_state IN ('running', 'stopped', 'deleted')),
  state             text NOT NULL CHECK (state IN ('pending', 'scheduled', 'starting', 'running', 'stopping', 'stopped', 'failed', 'deleting')),
  state_reason      text NOT NULL DEFAULT '',
  -- What the host's agent last reported, kept apart from `state` so a silent host makes
  -- the VM "unknown" without rewriting its lifecycle.
  observed_state    text NOT NULL DEFAULT 'unknown',
  observed_reason   text NOT NULL DEFAULT '',
  observed_at       timestamptz,
  -- The VM generation the agent's report refers to; reports about older generations
  -- never drive a transition.
  observed_generation integer NOT NULL DEFAULT 0,
  host_id           uuid REFERENCES hosts (id),
  -- Bumped by every user action, so the reconciler and agents can tell stale work apart.
  generation        integer NOT NULL DEFAULT 1,
  -- Set by restart: stop, then start again, even though desired_state stays 'running'.
  restart_pending   boolean NOT NULL DEFAULT false,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  state_changed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX vms_host_id_idx ON vms (host_id);

CREATE TABLE events (
  id             bigserial PRIMARY KEY,
  at             timestamptz NOT NULL DEFAULT now(),
  type           text NOT NULL,
  resource_type  text NOT NULL,
  resource_id    uuid,
  data           jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX events_resource_idx ON events (resource_type, resource_id);
