-- Up Migration

-- The entities grouping references, projected from shoal.entity-changes.v1. Projects and environments
-- are created on first sight; a deleted one keeps its row (a tombstone) so its messages are stale.
CREATE TABLE projects (
  id integer PRIMARY KEY,
  -- short ids are handed out from this counter under the row's lock: unique and gap-free
  next_short_number bigint NOT NULL DEFAULT 0,
  deleted_at timestamptz
);
CREATE TABLE environments (
  project_id integer NOT NULL,
  name text NOT NULL,
  deleted_at timestamptz,
  PRIMARY KEY (project_id, name)
);
-- detectors must be announced before occurrences name them
CREATE TABLE detectors (
  id integer PRIMARY KEY,
  project_id integer,
  deleted_at timestamptz
);

CREATE TABLE groups (
  id bigserial PRIMARY KEY,
  project_id integer NOT NULL,
  primary_hash text NOT NULL,
  short_number bigint NOT NULL,
  short_id text NOT NULL,
  group_type integer NOT NULL,
  status text NOT NULL DEFAULT 'unresolved' CHECK (status IN ('unresolved', 'resolved', 'ignored')),
  substatus integer,
  level text NOT NULL,
  title text NOT NULL,
  culprit text,
  first_seen timestamptz NOT NULL,
  last_seen timestamptz NOT NULL,
  times_seen bigint NOT NULL DEFAULT 0,
  first_release text,
  -- race-safe creation: two workers inserting the same hash cannot both succeed
  UNIQUE (project_id, primary_hash),
  UNIQUE (project_id, short_number)
);
-- every fingerprint hash of every occurrence, pointing at its group
CREATE TABLE group_hashes (
  project_id integer NOT NULL,
  hash text NOT NULL,
  group_id bigint NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
  PRIMARY KEY (project_id, hash)
);
CREATE INDEX group_hashes_group ON group_hashes (group_id);
CREATE TABLE group_environments (
  group_id bigint NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
  environment text NOT NULL,
  times_seen bigint NOT NULL,
  first_seen timestamptz NOT NULL,
  last_seen timestamptz NOT NULL,
  PRIMARY KEY (group_id, environment)
);

-- Down Migration
DROP TABLE group_environments;
DROP TABLE group_hashes;
DROP TABLE groups;
DROP TABLE detectors;
DROP TABLE environments;
DROP TABLE projects;
