-- Up Migration

-- Beside each stored offset, the identity of the record at next_offset - 1 (the last one applied:
-- its Kafka timestamp and a digest of its key and value; NULL = unknown, nothing to check). On
-- assignment the consumer compares it with the log: a topic re-created, Kafka reset or a database
-- restored beside another cluster shows as a mismatch, and the partition halts (halted_at, with
-- the reason) instead of filtering every new message as already applied.
ALTER TABLE consumer_offsets
  ADD COLUMN last_record_id text,
  ADD COLUMN halted_at timestamptz,
  ADD COLUMN halted_reason text;

-- Every operator reset of a stored offset (`shoal offsets reset`): who moved what, from where, why.
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
