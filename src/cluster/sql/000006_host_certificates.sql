-- Security (issue 12): a host's identity is its certificate, issued by the cluster CA from
-- the agent's own key. The server keeps no host secret: only which certificate is the
-- host's current one (serial, fingerprint, expiry). A certificate whose serial is not the
-- host's current one is refused, so replacing or removing a host revokes its old one.
ALTER TABLE hosts DROP COLUMN agent_token;
ALTER TABLE hosts ADD COLUMN cert_serial text;
ALTER TABLE hosts ADD COLUMN cert_fingerprint text;
ALTER TABLE hosts ADD COLUMN cert_not_after timestamptz;
CREATE UNIQUE INDEX hosts_cert_serial ON hosts (cert_serial);

-- Join tokens are one-time, expiring and bound to the host name they were made for; only
-- their hash is kept. `replace` lets the token's agent take over an existing host of that
-- name (an admin's explicit decision, e.g. after reinstalling the machine).
CREATE TABLE join_tokens (
  id          uuid PRIMARY KEY,
  host_name   text NOT NULL,
  token_hash  text NOT NULL UNIQUE,
  replace     boolean NOT NULL DEFAULT false,
  created_by  text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz NOT NULL,
  used_at     timestamptz,
  CHECK (expires_at > created_at)
);

-- The old shared join tokens stop working: every agent joins with its own token now.
UPDATE api_tokens SET revoked_at = now() WHERE kind = 'join' AND revoked_at IS NULL;

-- Which cluster CA this database belongs to: recorded by the first server that starts on
-- it. Another server (a replica) must present the same CA, or it would issue certificates
-- that the others refuse.
CREATE TABLE cluster_ca (
  id              integer PRIMARY KEY CHECK (id = 1),
  ca_fingerprint  text NOT NULL,
  recorded_at     timestamptz NOT NULL DEFAULT now()
);
