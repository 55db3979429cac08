-- Up Migration

-- Occurrences of a hash with no group yet whose issue type held them back: below its noise threshold
-- within the window ('noise'), or over the project's new-group rate ('rate_limit'). The whole occurrence
-- is kept, so the group, once created, starts with exact counts and every occurrence's event. Rows held
-- for noise older than the window are forgotten when the hash is next seen; rate-limited rows stay
-- until their group is created.
CREATE TABLE held_occurrences (
  project_id integer NOT NULL,
  primary_hash text NOT NULL,
  message_id text NOT NULL,
  seen_at timestamptz NOT NULL,
  held_for text NOT NULL CHECK (held_for IN ('noise', 'rate_limit')),
  occurrence jsonb NOT NULL,
  trace_id text,
  held_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (project_id, primary_hash, message_id)
);

-- New groups per project, issue type and minute of detection time, for the new-group rate limit.
CREATE TABLE group_creation_quota (
  project_id integer NOT NULL,
  group_type integer NOT NULL,
  minute timestamptz NOT NULL,
  created integer NOT NULL,
  PRIMARY KEY (project_id, group_type, minute)
);

-- Down Migration
DROP TABLE group_creation_quota;
DROP TABLE held_occurrences;
