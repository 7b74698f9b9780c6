-- Control-plane failover (issue 17, item 5; docs/operations.md "Running replicas"): several
-- servers on one database elect one leader, which alone runs the controllers. The lease is
-- one row judged by the database's clock (now()), so replicas whose clocks differ agree on
-- who leads; every change of holder bumps the epoch (the fencing number a leader renews
-- under). cluster/store/control-plane.ts is the only writer.
CREATE TABLE control_plane_lease (
  id            integer PRIMARY KEY CHECK (id = 1),
  -- The replica holding the lease (its id for this process's life); NULL once released.
  holder        text,
  epoch         bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0),
  -- The holder's database session (pg_backend_pid() of its election connection): when that
  -- session is gone (the process died, so the kernel closed its socket) the lease is free at
  -- once instead of after its TTL. NULL on the embedded database.
  holder_pid    integer,
  acquired_at   timestamptz,
  renewed_at    timestamptz,
  expires_at    timestamptz NOT NULL DEFAULT now()
);
INSERT INTO control_plane_lease (id) VALUES (1);

-- The replicas seen: each server upserts its row with every election tick; the API shows
-- them (GET /v1/control-plane) and the leader prunes rows not seen for a day.
CREATE TABLE control_plane_replicas (
  id            text PRIMARY KEY,
  api_url       text NOT NULL,
  host_name     text NOT NULL,
  version       text NOT NULL,
  started_at    timestamptz NOT NULL DEFAULT now(),
  last_seen_at  timestamptz NOT NULL DEFAULT now()
);

-- A value sealed with the server's secrets key at the first start: a replica started with
-- another key cannot open it and refuses to start (NOVA_CONFIG), instead of failing later on
-- every sealed secret and second factor.
CREATE TABLE secrets_key_check (
  id            integer PRIMARY KEY CHECK (id = 1),
  iv            text NOT NULL,
  tag           text NOT NULL,
  ciphertext    text NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now()
);
