-- Users (issue 16): people who log in to the console or the CLI with a username, a
-- password and optionally a TOTP second factor, each with a role (policy/permissions.ts).
-- API tokens (api_tokens) stay as they are, for scripts.
--
-- Secrets at rest: the password as a scrypt hash that records its parameters
-- (security/password-hash.ts); recovery codes and session tokens as SHA-256 hashes (both
-- are high-entropy random values); the TOTP secret itself, which verifying a code needs.
CREATE TABLE users (
  id                uuid PRIMARY KEY,
  -- Lower case, 1-64 of [a-z0-9._-] starting with a letter or digit (checked by the API too).
  username          text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
  role              text NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
  password_hash     text NOT NULL,
  password_changed_at timestamptz NOT NULL DEFAULT now(),
  -- The TOTP enrolment (states/user-mfa.ts): off, pending (a secret issued, no code
  -- verified yet), on. The secret exists exactly when the state is not off.
  mfa_state         text NOT NULL DEFAULT 'off' CHECK (mfa_state IN ('off', 'pending', 'on')),
  totp_secret       text,
  -- The last TOTP time step accepted: a code is good once, so a code seen on the wire or
  -- over a shoulder cannot be replayed within its 30 s window.
  totp_last_step    bigint,
  -- Lock-out: failed password or second-factor attempts since last_failed_at's window
  -- began; locked_until is set when they reach the server's limit.
  failed_attempts   integer NOT NULL DEFAULT 0 CHECK (failed_attempts >= 0),
  last_failed_at    timestamptz,
  locked_until      timestamptz,
  last_login_at     timestamptz,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  CHECK ((mfa_state = 'off') = (totp_secret IS NULL))
);

-- Ten single-use recovery codes per enrolment, hashed; a used one is kept (used_at) so
-- that presenting it again is told apart from a code that never existed.
CREATE TABLE user_recovery_codes (
  user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  code_hash  text NOT NULL,
  used_at    timestamptz,
  PRIMARY KEY (user_id, code_hash)
);

-- Login sessions: the console's cookie and the CLI's bearer token are both a 256-bit
-- random value stored only as its SHA-256. A session ends at expires_at (its absolute
-- lifetime) or after idle_timeout_ms without use (last_seen_at, touched at most once a
-- minute). The CSRF token is the synchronizer token the console sends back in
-- X-CSRF-Token; alone it grants nothing, so it is stored as is.
CREATE TABLE user_sessions (
  id               uuid PRIMARY KEY,
  user_id          uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  token_hash       text NOT NULL UNIQUE,
  csrf_token       text NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  last_seen_at     timestamptz NOT NULL DEFAULT now(),
  expires_at       timestamptz NOT NULL,
  idle_timeout_ms  bigint NOT NULL CHECK (idle_timeout_ms > 0),
  CHECK (expires_at > created_at)
);
CREATE INDEX user_sessions_user ON user_sessions (user_id);
CREATE INDEX user_sessions_expires ON user_sessions (expires_at);
