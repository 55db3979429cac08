-- Up Migration

-- Commands the domain refused (`ctx.reject`): a normal outcome, not a failure. Written in the
-- batch's transaction, so a caller reads what became of its command; the message stays in the
-- processed ledger, so a re-send is not judged again. `action`: only recorded, or also copied to the
-- dead-letter topic (SHOAL_POLICY_REJECTED_<REASON>=dlq).
CREATE TABLE message_rejections (
  id bigserial PRIMARY KEY,
  consumer_group text NOT NULL,
  topic text NOT NULL,
  partition integer NOT NULL,
  "offset" bigint NOT NULL,
  message_key text,
  message_id text NOT NULL,
  reason text NOT NULL,
  detail text NOT NULL,
  action text NOT NULL CHECK (action IN ('record', 'dlq')),
  rejected_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (consumer_group, topic, partition, "offset")
);
CREATE INDEX message_rejections_message ON message_rejections (consumer_group, message_id);
CREATE INDEX message_rejections_age ON message_rejections (rejected_at);

-- Keys of an ordered topic waiting behind a dead-lettered message (DESIGN.md semantics 6): the head
-- is the message whose replay (its id applied) releases the key; a discard releases it too, leaving
-- head_message_id NULL until the consumer has drained the key's parked messages.
CREATE TABLE parked_keys (
  consumer_group text NOT NULL,
  topic text NOT NULL,
  message_key text NOT NULL,
  partition integer NOT NULL,
  head_message_id text,
  head_offset bigint,
  head_reason text,
  parked_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer_group, topic, message_key)
);
CREATE INDEX parked_keys_released ON parked_keys (consumer_group, topic, partition)
  WHERE head_message_id IS NULL;

-- The messages behind a parked key, whole (key and value bytes, headers, where they were), applied in
-- `seq` order when the key drains. Never counted as failures.
CREATE TABLE parked_messages (
  seq bigserial PRIMARY KEY,
  consumer_group text NOT NULL,
  topic text NOT NULL,
  partition integer NOT NULL,
  "offset" bigint NOT NULL,
  message_key text NOT NULL,
  message_id text NOT NULL,
  key_bytes bytea,
  value_bytes bytea,
  headers json NOT NULL, -- values base64; json keeps any name exactly
  record_timestamp text NOT NULL,
  parked_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (consumer_group, topic, partition, "offset")
);
CREATE INDEX parked_messages_key ON parked_messages (consumer_group, topic, message_key, seq);

-- Down Migration

DROP TABLE parked_messages;
DROP TABLE parked_keys;
DROP TABLE message_rejections;
