-- Up Migration

-- When the issue or group (issue id = group id) a parked key's head names was deleted: the issue's tombstone, else the group's deletion as intake heard it on
-- shoal.entity-changes.v1, else NULL (live, or never heard of). Ids as the runtime stores them.
CREATE FUNCTION issue_deleted_at(entity text, entity_id text) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
  SELECT CASE WHEN entity IN ('issue', 'group') AND entity_id ~ '^[0-9]{1,18}$' THEN coalesce(
    (SELECT deleted_at FROM issues WHERE id = entity_id::bigint),
    (SELECT deleted_at FROM intake_groups WHERE group_id = entity_id::bigint)) END
$$;

-- The orphans `shoal orphans report --service lifecycle` lists and a cleanup_orphans command
-- re-checks, one definition, each naming its issue (issue_id):
-- - an issue not tombstoned whose group intake knows deleted (its `delete` dead-lettered,
--   discarded, or parked behind a failed command of the issue);
-- - an issue not tombstoned of a project intake knows deleted (hidden; grouping's own orphan
--   cleanup deletes such a project's groups without an entity change lifecycle would hear);
-- - a key parked behind a head dead-lettered stale_reference or unknown_reference for an issue or
--   group still deleted, until a cleanup has asked for its expiry (as grouping's view).
-- No held messages: lifecycle holds only agent commands for an issue never opened (decide), and
-- they leave by the hold deadline (unknown_reference; the key they headed stays parked, listed here).
CREATE VIEW orphans AS
SELECT 'issue' AS kind, i.id::text AS id, i.id AS issue_id, 'group ' || i.id AS entity,
       'group_deleted' AS why, g.deleted_at AS since
FROM issues i JOIN intake_groups g ON g.group_id = i.id
WHERE i.deleted_at IS NULL AND g.deleted_at IS NOT NULL
UNION ALL
SELECT 'issue', i.id::text, i.id, 'project ' || i.project_id, 'project_deleted', p.deleted_at
FROM issues i JOIN intake_projects p ON p.id = i.project_id
WHERE i.deleted_at IS NULL AND p.deleted_at IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM intake_groups g WHERE g.group_id = i.id AND g.deleted_at IS NOT NULL)
UNION ALL
SELECT 'parked_key', json_build_array(k.consumer_group, k.topic, k.message_key)::text,
       CASE WHEN d.at IS NOT NULL THEN f.entity_id::bigint END,
       f.entity || ' ' || f.entity_id, 'head_entity_deleted', d.at
FROM parked_keys k
JOIN message_failures f
  ON (f.consumer_group, f.topic, f.partition, f."offset") = (k.consumer_group, k.topic, k.partition, k.head_offset)
CROSS JOIN LATERAL (SELECT issue_deleted_at(f.entity, f.entity_id) AS at) d
WHERE k.head_message_id IS NOT NULL AND k.expiry_requested_at IS NULL
  AND f.reason IN ('stale_reference', 'unknown_reference') AND d.at IS NOT NULL;

-- One row per record a cleanup_orphans command cleaned: the record as it was.
CREATE TABLE orphan_cleanups (
  id bigserial PRIMARY KEY,
  kind text NOT NULL,
  record_id text NOT NULL,
  issue_id bigint NOT NULL,
  why text NOT NULL,
  record jsonb NOT NULL,
  actor text NOT NULL,
  reason text,
  command_id uuid NOT NULL,
  cleaned_at timestamptz NOT NULL DEFAULT now()
);

-- Down Migration
DROP TABLE orphan_cleanups;
DROP VIEW orphans;
DROP FUNCTION issue_deleted_at(text, text);
