-- Up Migration

-- The projects dedup has seen, made on first sight by a group event. A deletion on
-- shoal.entity-changes.v1 is a tombstone (later group events and commands of the project are stale
-- references); `restored`/`created` lift it. A row is also the project's lock: a batch adding to a
-- project share-locks it, its deletion locks it, so the cascade sees every group added before it.
CREATE TABLE projects (
  id bigint PRIMARY KEY,
  deleted_at timestamptz
);
INSERT INTO projects (id)
SELECT project_id FROM incidents
UNION SELECT project_id FROM members WHERE project_id IS NOT NULL;

-- A deleted project's incidents keep their rows (lifecycle's duplicates refer to them), detached:
-- no members, no canonical group, no key leading to them.
ALTER TABLE incidents ADD COLUMN deleted_at timestamptz;
CREATE INDEX members_project ON members (project_id) WHERE deleted_at IS NULL;
CREATE INDEX incidents_project ON incidents (project_id);

-- Down Migration

DROP INDEX incidents_project;
DROP INDEX members_project;
ALTER TABLE incidents DROP COLUMN deleted_at;
DROP TABLE projects;
