-- Up Migration

-- The orphans `shoal orphans report --service dedup` lists and a cleanup command re-checks, one
-- definition: members of a deleted project. Its deletion's cascade made them tombstones and took
-- them out of their incidents; the project's own tombstone keeps later messages naming them stale,
-- so their rows serve nothing. (A deleted group's member in a live project is its only tombstone,
-- and stays.)
CREATE VIEW orphans AS
SELECT m.group_id, m.project_id, 'project_deleted' AS why, p.deleted_at AS since
FROM members m JOIN projects p ON p.id = m.project_id
WHERE m.deleted_at IS NOT NULL AND p.deleted_at IS NOT NULL;

-- One row per member `shoal orphans cleanup` removed, by command: the row as it was.
CREATE TABLE orphan_cleanups (
  id bigserial PRIMARY KEY,
  group_id bigint NOT NULL,
  project_id bigint NOT NULL,
  why text NOT NULL,
  record jsonb NOT NULL,
  actor text NOT NULL,
  reason text,
  command_id text NOT NULL,
  cleaned_at timestamptz NOT NULL DEFAULT now()
);

-- Down Migration
DROP TABLE orphan_cleanups;
DROP VIEW orphans;
