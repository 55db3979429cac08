-- Up Migration

-- When an entity a held message or a parked key's head names was deleted: the entity's own
-- tombstone, else its project's (`project:…` ids), else NULL (live or never heard of). Ids as the
-- runtime stores them (held_messages.entity_id, message_failures.entity_id).
CREATE FUNCTION entity_deleted_at(entity text, entity_id text) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
  WITH id AS (
    SELECT CASE WHEN entity_id ~ '^[0-9]{1,18}$' THEN entity_id::bigint END AS n,
           CASE WHEN entity_id ~ '^[0-9]{1,18}:' THEN split_part(entity_id, ':', 1)::bigint END AS project,
           substr(entity_id, strpos(entity_id, ':') + 1) AS rest)
  SELECT coalesce(
    CASE entity
      WHEN 'project' THEN (SELECT deleted_at FROM projects, id WHERE projects.id = id.n)
      WHEN 'detector' THEN (SELECT deleted_at FROM detectors, id WHERE detectors.id = id.n)
      WHEN 'environment' THEN (SELECT deleted_at FROM environments e, id
                               WHERE e.project_id = id.project AND md5(e.name) = md5(id.rest))
      WHEN 'group' THEN coalesce(
        (SELECT deleted_at FROM groups g, id WHERE g.id = id.n),
        (SELECT discarded_at FROM discarded_hashes d, id WHERE d.project_id = id.project AND d.hash = id.rest))
    END,
    (SELECT deleted_at FROM projects, id WHERE projects.id = id.project))
$$;

-- The orphans `shoal orphans report --service grouping` lists and a cleanup command re-checks, one
-- definition: live groups of a deleted project; occurrences held for noise or the rate limit of a
-- deleted project; messages held for an entity deleted since (or whose project was); keys parked
-- behind a head dead-lettered stale_reference for an entity still deleted.
CREATE VIEW orphans AS
SELECT 'group' AS kind, g.id::text AS id, 'project ' || g.project_id AS entity,
       'project_deleted' AS why, p.deleted_at AS since
FROM groups g JOIN projects p ON p.id = g.project_id
WHERE g.deleted_at IS NULL AND p.deleted_at IS NOT NULL
UNION ALL
SELECT 'held_occurrence', h.project_id || ':' || h.primary_hash || ':' || h.message_id,
       'project ' || h.project_id, 'project_deleted', p.deleted_at
FROM held_occurrences h JOIN projects p ON p.id = h.project_id
WHERE p.deleted_at IS NOT NULL
UNION ALL
SELECT 'held_message', h.seq::text, h.entity || ' ' || h.entity_id, 'entity_deleted', d.at
FROM held_messages h CROSS JOIN LATERAL (SELECT entity_deleted_at(h.entity, h.entity_id) AS at) d
WHERE d.at IS NOT NULL
UNION ALL
SELECT 'parked_key', json_build_array(k.consumer_group, k.topic, k.message_key)::text,
       f.entity || ' ' || f.entity_id, 'head_entity_deleted', d.at
FROM parked_keys k
JOIN message_failures f
  ON (f.consumer_group, f.topic, f.partition, f."offset") = (k.consumer_group, k.topic, k.partition, k.head_offset)
CROSS JOIN LATERAL (SELECT entity_deleted_at(f.entity, f.entity_id) AS at) d
WHERE k.head_message_id IS NOT NULL AND k.expiry_requested_at IS NULL
  AND f.reason = 'stale_reference' AND d.at IS NOT NULL;

-- One row per record `shoal orphans cleanup` cleaned, by command: the record as it was.
CREATE TABLE orphan_cleanups (
  id bigserial PRIMARY KEY,
  kind text NOT NULL,
  record_id text NOT NULL,
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
DROP FUNCTION entity_deleted_at(text, text);
