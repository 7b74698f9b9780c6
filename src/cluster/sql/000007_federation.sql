-- Federation I (issue 14, docs/federation.md): this cluster's identity, its peers, the
-- ASS records of every cluster (its own included), the version vector, peering tokens
-- and the evidence against misbehaving peers.

-- cluster_info (one row) gains the signing identity and the sequence of the records this
-- cluster publishes. The key lives in the database so that every replica signs alike.
ALTER TABLE cluster_info ADD COLUMN singleton integer NOT NULL DEFAULT 1 UNIQUE CHECK (singleton = 1);
ALTER TABLE cluster_info ADD COLUMN signing_key_pem text NOT NULL DEFAULT '';
ALTER TABLE cluster_info ADD COLUMN signing_public_key text NOT NULL DEFAULT '';
ALTER TABLE cluster_info ADD COLUMN seq bigint NOT NULL DEFAULT 0 CHECK (seq >= 0);

CREATE TABLE fed_peers (
  id                 uuid PRIMARY KEY,
  name               text NOT NULL,
  state              text NOT NULL CHECK (state IN ('active', 'quarantined', 'removed')),
  api_url            text NOT NULL,
  fed_host           text NOT NULL,
  fed_port           integer NOT NULL CHECK (fed_port > 0 AND fed_port < 65536),
  ca_pem             text NOT NULL,
  ca_fingerprint     text NOT NULL,
  signing_public_key text NOT NULL,
  protocol           integer NOT NULL,
  added_at           timestamptz NOT NULL DEFAULT now(),
  last_contact_at    timestamptz,
  last_error         text NOT NULL DEFAULT '',
  -- The peer's own sequence at the last contact: lag = this minus our vector entry.
  peer_seq           bigint NOT NULL DEFAULT 0,
  quarantine_kind    text CHECK (quarantine_kind IN ('equivocation', 'bad-signature', 'replay', 'not-owner')),
  quarantine_reason  text NOT NULL DEFAULT '',
  quarantined_at     timestamptz,
  removed_at         timestamptz,
  state_changed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX fed_peers_live_name ON fed_peers (name) WHERE state <> 'removed';

-- Every cluster's records as last seen (ours included): one row per origin and key, the
-- newest version. A version is unique per origin, so (origin, version) is unique too.
CREATE TABLE fed_records (
  origin       uuid NOT NULL,
  kind         text NOT NULL CHECK (kind IN ('cluster', 'host', 'vm', 'image')),
  id           text NOT NULL,
  version      bigint NOT NULL CHECK (version > 0),
  deleted      boolean NOT NULL,
  body         jsonb,
  body_json    text NOT NULL,
  issued_at    text NOT NULL,
  sig          text NOT NULL,
  received_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (origin, kind, id),
  UNIQUE (origin, version)
);
CREATE INDEX fed_records_kind_id ON fed_records (kind, id);

-- How much of each origin's history this cluster holds in full (docs/federation.md §3).
CREATE TABLE fed_vector (
  origin  uuid PRIMARY KEY,
  seq     bigint NOT NULL CHECK (seq >= 0)
);

-- One-time peering tokens; only the hash of the secret is kept.
CREATE TABLE fed_tokens (
  id          uuid PRIMARY KEY,
  token_hash  text NOT NULL UNIQUE,
  created_by  text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz NOT NULL,
  used_at     timestamptz,
  used_by     uuid,
  CHECK (expires_at > created_at)
);

-- What a quarantine rests on: the signed records that prove the violation.
CREATE TABLE fed_evidence (
  id           bigserial PRIMARY KEY,
  peer_id      uuid NOT NULL,
  sender_id    uuid NOT NULL,
  kind         text NOT NULL CHECK (kind IN ('equivocation', 'bad-signature', 'replay', 'not-owner')),
  detail       text NOT NULL,
  records      jsonb NOT NULL,
  detected_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fed_evidence_peer ON fed_evidence (peer_id);
