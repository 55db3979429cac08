-- Up Migration

-- Retention of grouping's own tables (src/retention.ts). A quota row is dropped an hour after it was
-- last spent (updated_at), and only once its minute is an hour old too; a noise-held row once both its
-- detection time and the time it was held are past its issue type's window. Both clocks, so that
-- applying old occurrences from the log (a backlog, a rebuild) decides as an uninterrupted run would.
ALTER TABLE group_creation_quota ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX group_creation_quota_age ON group_creation_quota (updated_at);
CREATE INDEX held_occurrences_noise_age ON held_occurrences (held_at) WHERE held_for = 'noise';

-- Down Migration

DROP INDEX held_occurrences_noise_age;
DROP INDEX group_creation_quota_age;
ALTER TABLE group_creation_quota DROP COLUMN updated_at;
