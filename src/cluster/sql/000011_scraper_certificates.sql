-- The metrics scrapers' certificates this cluster's CA issued (`novacron metrics
-- credentials`), so that one can be revoked: the server refuses a revoked one on
-- /metrics, and every agent learns the revoked serials from its heartbeat replies
-- (docs/security.md). Certificates issued before this table existed have no row and stay
-- valid until they expire.
CREATE TABLE scraper_certificates (
  serial      text PRIMARY KEY CHECK (serial ~ '^[0-9a-f]{1,64}$'),
  name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 63),
  not_after   timestamptz NOT NULL,
  issued_at   timestamptz NOT NULL DEFAULT now(),
  revoked_at  timestamptz
);
CREATE INDEX scraper_certificates_revoked ON scraper_certificates (not_after) WHERE revoked_at IS NOT NULL;
