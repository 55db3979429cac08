-- Up Migration

-- The ledger's key compared byte for byte ("C"), not by the database's collation: every claim probes
-- and inserts into the key's index, and a collation's comparison costs more than a memcmp. Equality,
-- and so what is a duplicate, is the same under any deterministic collation: byte equality.
ALTER TABLE processed_messages
  ALTER COLUMN consumer_group TYPE text COLLATE "C",
  ALTER COLUMN message_id TYPE text COLLATE "C";

-- Down Migration

ALTER TABLE processed_messages
  ALTER COLUMN consumer_group TYPE text COLLATE "default",
  ALTER COLUMN message_id TYPE text COLLATE "default";
