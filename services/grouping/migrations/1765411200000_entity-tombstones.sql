-- Up Migration

-- Sentry's delete of a group (DESIGN.md "Entity changes"). The group's row stays, marked deleted_at:
-- that is its tombstone (a column rather than a table of their own, so "which groups exist" stays one
-- table and a deleted group's aggregates remain readable; its id is never handed out again). Its
-- fingerprints are freed (their group_hashes rows removed), so the next occurrence of one starts a new
-- group: a primary hash is unique among live groups only. Grouping never updates a tombstoned row.
ALTER TABLE groups ADD COLUMN deleted_at timestamptz;
ALTER TABLE groups DROP CONSTRAINT groups_project_id_primary_hash_key;
CREATE UNIQUE INDEX groups_live_primary_hash ON groups (project_id, primary_hash)
  WHERE deleted_at IS NULL;

-- Sentry's delete-and-discard: the group is tombstoned as above and its fingerprints too, here. A later
-- occurrence with one of them is counted (times_dropped) and dropped; a status change naming one is a
-- stale reference. `restored` on the group removes its rows: the fingerprints group again.
CREATE TABLE discarded_hashes (
  project_id bigint NOT NULL,
  hash text NOT NULL,
  group_id bigint NOT NULL,
  discarded_at timestamptz NOT NULL,
  times_dropped bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (project_id, hash)
);
CREATE INDEX discarded_hashes_group ON discarded_hashes (group_id);

-- Releases, projected from shoal.entity-changes.v1 with their tombstones: a deleted release keeps its
-- row (deleted_at) so releases stay ordered by date. A version is unique by md5 (no length limit).
-- commits null: never told.
CREATE TABLE releases (
  project_id bigint NOT NULL,
  version text NOT NULL,
  released_at timestamptz,
  commits text[],
  deleted_at timestamptz
);
CREATE UNIQUE INDEX releases_key ON releases (project_id, md5(version));

-- Down Migration
DROP TABLE releases;
DROP TABLE discarded_hashes;
DROP INDEX groups_live_primary_hash;
-- the model before tombstones removed a deleted group, hashes and environments with it
DELETE FROM groups WHERE deleted_at IS NOT NULL;
ALTER TABLE groups ADD CONSTRAINT groups_project_id_primary_hash_key UNIQUE (project_id, primary_hash);
ALTER TABLE groups DROP COLUMN deleted_at;
