-- Up Migration

-- `shoal orphans cleanup` removes orphaned regression records (their group deleted, or never answered
-- by grouping within the deadline) and leaves one audit row each, with the record as it was.
CREATE TABLE orphan_cleanups (
  id bigserial PRIMARY KEY,
  regression_id bigint NOT NULL,
  group_id bigint NOT NULL,
  why text NOT NULL, -- group_deleted or unconfirmed
  record jsonb NOT NULL,
  actor text NOT NULL,
  cleaned_at timestamptz NOT NULL DEFAULT now()
);

-- Down Migration
DROP TABLE orphan_cleanups;
