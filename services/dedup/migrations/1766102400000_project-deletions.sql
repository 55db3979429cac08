-- Up Migration

-- Projects whose deletion dedup has seen on shoal.entity-changes.v1 (a tombstone: later group
-- events and commands of the project are stale references); `restored`/`created` lift it. Live
-- projects need no row: they are made on first sight.
CREATE TABLE projects (
  id bigint PRIMARY KEY,
  deleted_at timestamptz
);

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
