-- A migration's progress over time (issue 16: the console's chart of wire vs logical bytes
-- for any migration, not only while a console watched it). The executor appends one sample
-- per progress reading at most every sample_every_ms; past the cap (src/cluster/store/
-- migration-samples.ts) every second sample is deleted and the spacing doubles, so a
-- long migration keeps its whole curve at a coarser grain. Samples go with their migration.
CREATE TABLE migration_samples (
  migration_id            uuid NOT NULL REFERENCES migrations (id) ON DELETE CASCADE,
  at                      timestamptz NOT NULL,
  phase                   text NOT NULL,
  pass                    integer NOT NULL,
  memory_bytes_sent       bigint NOT NULL,
  memory_bytes_remaining  bigint NOT NULL,
  disk_bytes_done         bigint NOT NULL,
  dirty_bytes_per_second  double precision NOT NULL,
  throughput_mbps         double precision NOT NULL,
  -- DWCP only (NULL with QEMU's transport, which sends the logical bytes as they are).
  memory_wire_bytes       bigint,
  memory_logical_bytes    bigint,
  disk_wire_bytes         bigint,
  disk_logical_bytes      bigint,
  PRIMARY KEY (migration_id, at)
);

-- The spacing between a migration's samples: 1 s, doubled at each thinning.
ALTER TABLE migrations ADD COLUMN sample_every_ms integer NOT NULL DEFAULT 1000 CHECK (sample_every_ms > 0);
