-- Up Migration

-- Incidents: groups that are one real incident. The canonical group is the oldest live member
-- (by its group_created time, then id); null once no live member is left. A merged incident keeps
-- its row, pointing at the one it was merged into, with no members.
CREATE TABLE incidents (
  id bigserial PRIMARY KEY,
  project_id bigint NOT NULL,
  canonical_group_id bigint,
  merged_into bigint REFERENCES incidents (id),
  created_at timestamptz NOT NULL
);

-- Every group dedup has heard of: from its group_created (normalised parts and key), its
-- group_activity (counts, first and last seen: the latest totals, so a re-delivery changes
-- nothing) or its deletion on shoal.entity-changes.v1 (a tombstone: later group events naming it
-- are stale references). split_at: an operator split it out; its key never links it again.
CREATE TABLE members (
  group_id bigint PRIMARY KEY,
  project_id bigint,
  dedup_key text,
  parts jsonb,
  created_at timestamptz,
  incident_id bigint REFERENCES incidents (id),
  times_seen bigint NOT NULL DEFAULT 0,
  first_seen timestamptz,
  last_seen timestamptz,
  split_at timestamptz,
  deleted_at timestamptz
);
CREATE INDEX members_incident ON members (incident_id, created_at) WHERE incident_id IS NOT NULL;

-- The incident a key links new groups to. Its row is the lock that serialises linking one key
-- across partitions and members; a merge points the merged incident's keys at the one it joined.
CREATE TABLE dedup_keys (
  project_id bigint NOT NULL,
  dedup_key text NOT NULL,
  incident_id bigint REFERENCES incidents (id),
  PRIMARY KEY (project_id, dedup_key)
);
CREATE INDEX dedup_keys_incident ON dedup_keys (incident_id);

-- An incident's occurrence counts: the sum of its live members'.
CREATE VIEW incident_totals AS
SELECT incident_id, count(*)::int AS members, sum(times_seen)::bigint AS times_seen,
       min(first_seen) AS first_seen, max(last_seen) AS last_seen
FROM members
WHERE incident_id IS NOT NULL AND deleted_at IS NULL
GROUP BY incident_id;

-- Down Migration

DROP VIEW incident_totals;
DROP TABLE dedup_keys;
DROP TABLE members;
DROP TABLE incidents;
