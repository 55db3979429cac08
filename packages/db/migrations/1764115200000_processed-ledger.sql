-- Up Migration

-- Message ids a consumer group has applied, so a redelivery or a replay from a dead-letter topic
-- (which keeps the original id) is never applied twice. Pruned by age, never sooner than the
-- dead-letter topics' retention.
CREATE TABLE processed_messages (
  consumer_group text NOT NULL,
  message_id text NOT NULL,
  processed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer_group, message_id)
);
CREATE INDEX processed_messages_age ON processed_messages (processed_at);

ALTER TABLE message_failures ADD COLUMN message_id text;
CREATE INDEX outbox_published_age ON outbox (published_at) WHERE published_at IS NOT NULL;

-- Down Migration

DROP INDEX outbox_published_age;
ALTER TABLE message_failures DROP COLUMN message_id;
DROP TABLE processed_messages;
