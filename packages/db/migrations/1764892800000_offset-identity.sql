-- Up Migration

-- Beside each stored offset, the identity of the last record applied (its message id), so a
-- partition whose log no longer holds that record at next_offset - 1 (Kafka reset, topic
-- re-created, database restored beside another cluster) is halted loudly instead of skipped.
ALTER TABLE consumer_offsets
  ADD COLUMN last_record_id text,
  ADD COLUMN halted_at timestamptz,
  ADD COLUMN halted_reason text;

-- Every operator reset of a stored offset (`shoal offsets reset`): who moved what, from where to
-- where, and why.
CREATE TABLE offset_resets (
  id bigserial PRIMARY KEY,
  consumer_group text NOT NULL,
  topic text NOT NULL,
  partition integer NOT NULL,
  from_offset bigint,
  to_offset bigint NOT NULL,
  actor text NOT NULL,
  reason text NOT NULL,
  reset_at timestamptz NOT NULL DEFAULT now()
);

-- Down Migration

DROP TABLE offset_resets;
ALTER TABLE consumer_offsets
  DROP COLUMN halted_reason,
  DROP COLUMN halted_at,
  DROP COLUMN last_record_id;
