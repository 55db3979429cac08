-- Up Migration

-- What lifecycle's intake consumer keeps to turn group events, incidents and entity changes into
-- system commands (src/intake/). Only intake writes these; the issue model never reads them.

-- Every group intake has seen (its project, for a project's hide and unhide) and the groups
-- deleted on shoal.entity-changes.v1 (tombstones: a later group event is stale_reference(group)).
CREATE TABLE intake_groups (
  group_id bigint PRIMARY KEY,
  project_id bigint,
  deleted_at timestamptz
);
CREATE INDEX intake_groups_by_project ON intake_groups (project_id) WHERE deleted_at IS NULL;

-- The projects of created groups, and deletions (deleted_at set) and restores (cleared): a group
-- created in a deleted project opens hidden. A group_created batch locks its projects' rows, so a
-- deletion in flight and a new group of the project always see each other.
CREATE TABLE intake_projects (
  id bigint PRIMARY KEY,
  deleted_at timestamptz
);

-- Which incident each group is in and each incident's canonical group, as dedup last said: a new
-- canonical re-points every member's duplicate link; a group's unlink from an incident it has
-- already left (a split seen out of order) clears nothing.
CREATE TABLE intake_incidents (
  id bigint PRIMARY KEY,
  canonical_group_id bigint
);
CREATE TABLE intake_incident_members (
  group_id bigint PRIMARY KEY,
  incident_id bigint NOT NULL
);
CREATE INDEX intake_incident_members_by_incident ON intake_incident_members (incident_id);

-- Down Migration
DROP TABLE intake_incident_members;
DROP TABLE intake_incidents;
DROP TABLE intake_projects;
DROP TABLE intake_groups;
