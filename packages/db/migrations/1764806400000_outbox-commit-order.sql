-- Up Migration

-- The transaction that wrote each outbox row. The relay publishes a row only once every transaction
-- that began before it has ended (txid below its snapshot's xmin), so a row of a transaction still
-- open is never overtaken by a later one. Rows written before this migration take its own id.
ALTER TABLE outbox ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id();

-- one row per event, for operators and tests; event ids are text, as dead letters (raw events, whose
-- key and value bytes are base64 in the row) carry ids of their own
DROP VIEW outbox_events;
CREATE VIEW outbox_events AS
SELECT o.seq, x.n AS ordinal, x.e->>'eventId' AS event_id, x.e->>'topic' AS topic,
       x.e->>'key' AS message_key, (x.e->'payload')::jsonb AS payload, (x.e->'headers')::jsonb AS headers,
       coalesce((x.e->>'raw')::boolean, false) AS raw, o.created_at, o.published_at
FROM outbox o, json_array_elements(o.events) WITH ORDINALITY AS x(e, n);

-- Outbox events the relay could not encode (schema-invalid payload, not a Shoal topic) or the broker
-- refused for good (e.g. a record too large): set aside whole, so the rest flows and an operator can
-- see, fix and re-emit them. Kept as long as dead letters (14 days).
CREATE TABLE outbox_failures (
  seq bigint NOT NULL,
  ordinal integer NOT NULL,
  event_id text NOT NULL,
  topic text NOT NULL,
  event json NOT NULL,
  error_class text NOT NULL,
  error_message text NOT NULL,
  failed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (seq, ordinal)
);
CREATE INDEX outbox_failures_age ON outbox_failures (failed_at);

-- Down Migration

DROP TABLE outbox_failures;
DROP VIEW outbox_events;
CREATE VIEW outbox_events AS
SELECT o.seq, x.n AS ordinal, (x.e->>'eventId')::uuid AS event_id, x.e->>'topic' AS topic,
       x.e->>'key' AS message_key, (x.e->'payload')::jsonb AS payload, (x.e->'headers')::jsonb AS headers,
       o.created_at, o.published_at
FROM outbox o, json_array_elements(o.events) WITH ORDINALITY AS x(e, n);
ALTER TABLE outbox DROP COLUMN txid;
