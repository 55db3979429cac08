-- Up Migration

-- Messages that name an entity never announced (DESIGN.md semantics 7), whole (key and value bytes,
-- headers, where they were): re-driven when the entity's announcement arrives, and past
-- `deadline_at` dead-lettered as `unknown_reference`, never deleted unapplied. A re-driven message
-- that is still waiting keeps its `held_at` (and so its deadline).
CREATE TABLE held_messages (
  seq bigserial PRIMARY KEY,
  consumer_group text NOT NULL,
  topic text NOT NULL,
  partition integer NOT NULL,
  "offset" bigint NOT NULL,
  message_key text,
  message_id text NOT NULL,
  key_bytes bytea,
  value_bytes bytea,
  headers json NOT NULL, -- values base64, as parked_messages
  record_timestamp text NOT NULL,
  entity text NOT NULL,
  entity_id text NOT NULL,
  held_at timestamptz NOT NULL,
  deadline_at timestamptz NOT NULL,
  UNIQUE (consumer_group, topic, partition, "offset")
);
CREATE INDEX held_messages_entity ON held_messages (consumer_group, entity, entity_id);
CREATE INDEX held_messages_deadline ON held_messages (consumer_group, deadline_at);

-- Which entity a stale or unknown reference named (the dead-letter record's shoal.dlq.entity-id).
ALTER TABLE message_failures ADD COLUMN entity_id text;

-- Down Migration

ALTER TABLE message_failures DROP COLUMN entity_id;
DROP TABLE held_messages;
