-- Up Migration

-- Where each consumer group is in each partition. Written in the same transaction as the
-- effects of the batch that advanced it, so effects and position never disagree.
CREATE TABLE consumer_offsets (
  consumer_group text NOT NULL,
  topic text NOT NULL,
  partition integer NOT NULL,
  next_offset bigint NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer_group, topic, partition)
);

-- Events a handler emitted, written in its transaction and published by the relay.
-- event_id is derived from the input message's coordinates and the event's ordinal, so a
-- re-run writes the same id and the insert is a no-op.
CREATE TABLE outbox (
  seq bigserial PRIMARY KEY,
  event_id uuid NOT NULL UNIQUE,
  topic text NOT NULL,
  message_key text NOT NULL,
  payload jsonb NOT NULL,
  headers jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  published_at timestamptz
);
-- the relay reads what is unpublished, in order
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;

-- Every message a consumer did not apply (dead-lettered or skipped by policy), for operators.
CREATE TABLE message_failures (
  id bigserial PRIMARY KEY,
  consumer_group text NOT NULL,
  topic text NOT NULL,
  partition integer NOT NULL,
  "offset" bigint NOT NULL,
  message_key text,
  reason text NOT NULL,
  entity text,
  action text NOT NULL CHECK (action IN ('dlq', 'skip')),
  error_class text NOT NULL,
  error_message text NOT NULL,
  failed_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (consumer_group, topic, partition, "offset")
);
CREATE INDEX message_failures_reason ON message_failures (reason, failed_at);

-- Down Migration

DROP TABLE message_failures;
DROP TABLE outbox;
DROP TABLE consumer_offsets;
