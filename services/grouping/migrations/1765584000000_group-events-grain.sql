-- Up Migration

-- Group events at the grain downstream needs (DESIGN.md "Group events", src/activity.ts).
-- group_activity reports, per group, what changed since its last report: the flush compares
-- times_seen with reported_times_seen and records what it reported in the same transaction. The
-- latest occurrence's release and trace id ride on the aggregate update the batch makes anyway.
ALTER TABLE groups
  ADD COLUMN reported_times_seen bigint NOT NULL DEFAULT 0,
  ADD COLUMN last_release text,
  ADD COLUMN last_trace_id text;
-- an environment row is created by the group's first occurrence in it; the flush reports it once
ALTER TABLE group_environments ADD COLUMN reported boolean NOT NULL DEFAULT false;

-- The first occurrence of each release in a project (release_seen). Apart from `releases`, which
-- projects the entity changes that announce releases: a release is seen here whether or not it was
-- ever announced, and an announcement is not an occurrence.
CREATE TABLE releases_seen (
  project_id bigint NOT NULL,
  version text NOT NULL,
  first_seen timestamptz NOT NULL
);
CREATE UNIQUE INDEX releases_seen_key ON releases_seen (project_id, md5(version));

-- Down Migration
DROP TABLE releases_seen;
ALTER TABLE group_environments DROP COLUMN reported;
ALTER TABLE groups
  DROP COLUMN last_trace_id,
  DROP COLUMN last_release,
  DROP COLUMN reported_times_seen;
