-- Up Migration
-- The runtime tests' service: occurrences counted per (project, fingerprint).
CREATE TABLE occurrence_counts (
  project_id integer NOT NULL,
  fingerprint text NOT NULL,
  times_seen bigint NOT NULL,
  -- the total its scheduled activity report last reported (activity.ts)
  reported_times_seen bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (project_id, fingerprint)
);
-- the projects it may reference; a deleted one makes its occurrences stale references
CREATE TABLE projects (
  id integer PRIMARY KEY,
  deleted_at timestamptz
);

-- Down Migration
DROP TABLE projects;
DROP TABLE occurrence_counts;
