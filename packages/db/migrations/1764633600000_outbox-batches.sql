-- Up Migration

-- One outbox row per consumer transaction, holding its events in order as one JSON array (eventId,
-- topic, key, payload, headers), instead of one row per event. Writing, indexing and marking a row per
-- event was half of a grouping batch's database time (bench/grouping); event ids stay unique because
-- the processed ledger lets each source message emit once. `json`, not `jsonb`: the relay only reads it back.
CREATE TABLE outbox_batches (
  seq bigserial PRIMARY KEY,
  events json NOT NULL,
  event_count integer NOT NULL CHECK (event_count > 0),
  created_at timestamptz NOT NULL DEFAULT now(),
  published_at timestamptz
);
INSERT INTO outbox_batches (events, event_count, created_at, published_at)
SELECT json_build_array(json_build_object(
         'eventId', event_id, 'topic', topic, 'key', message_key, 'payload', payload, 'headers', headers)),
       1, created_at, published_at
FROM outbox ORDER BY seq;
DROP TABLE outbox;
ALTER TABLE outbox_batches RENAME TO outbox;
ALTER INDEX outbox_batches_pkey RENAME TO outbox_pkey;
ALTER SEQUENCE outbox_batches_seq_seq RENAME TO outbox_seq_seq;
-- the relay reads what is unpublished, in order; pruning finds what was published long ago
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;
CREATE INDEX outbox_published_age ON outbox (published_at) WHERE published_at IS NOT NULL;
-- one row per event, for operators and tests
CREATE VIEW outbox_events AS
SELECT o.seq, x.n AS ordinal, (x.e->>'eventId')::uuid AS event_id, x.e->>'topic' AS topic,
       x.e->>'key' AS message_key, (x.e->'payload')::jsonb AS payload, (x.e->'headers')::jsonb AS headers,
       o.created_at, o.published_at
FROM outbox o, json_array_elements(o.events) WITH ORDINALITY AS x(e, n);

-- Down Migration

DROP VIEW outbox_events;

CREATE TABLE outbox_rows (
  seq bigserial PRIMARY KEY,
  event_id uuid NOT NULL UNIQUE,
  topic text NOT NULL,
  message_key text NOT NULL,
  payload jsonb NOT NULL,
  headers jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  published_at timestamptz
);
INSERT INTO outbox_rows (event_id, topic, message_key, payload, headers, created_at, published_at)
SELECT (e->>'eventId')::uuid, e->>'topic', e->>'key', (e->'payload')::jsonb, (e->'headers')::jsonb,
       o.created_at, o.published_at
FROM outbox o, json_array_elements(o.events) WITH ORDINALITY AS x(e, n)
ORDER BY o.seq, x.n;
DROP TABLE outbox;
ALTER TABLE outbox_rows RENAME TO outbox;
ALTER INDEX outbox_rows_pkey RENAME TO outbox_pkey;
ALTER INDEX outbox_rows_event_id_key RENAME TO outbox_event_id_key;
ALTER SEQUENCE outbox_rows_seq_seq RENAME TO outbox_seq_seq;
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;
CREATE INDEX outbox_published_age ON outbox (published_at) WHERE published_at IS NOT NULL;
