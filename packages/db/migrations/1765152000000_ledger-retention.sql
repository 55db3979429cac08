-- Up Migration

-- What each ledger row is kept for (DESIGN.md semantics 5), so the ledger stays bounded at any rate:
--   applied        applied; kept for the re-send window (SHOAL_LEDGER_RESEND_WINDOW_HOURS): a
--                  redelivery or an upstream re-send within it is a duplicate
--   dead_lettered  dead-lettered, not applied; kept as long as the dead-letter topics keep records
--                  (14 days), so its replay is recognised as one: a claim turns it into `replayed`
--   replayed       applied, and a dead letter carries the same id (its replay was applied, or a copy
--                  failed after it was applied); kept as long as the dead letters: replaying again is
--                  a duplicate
-- processed_at is when the row took its kind. Rows of each retention are found by their own index.
ALTER TABLE processed_messages
  ADD COLUMN kind text NOT NULL DEFAULT 'applied'
  CHECK (kind IN ('applied', 'dead_lettered', 'replayed'));
DROP INDEX processed_messages_age;
CREATE INDEX processed_messages_applied_age ON processed_messages (processed_at) WHERE kind = 'applied';
CREATE INDEX processed_messages_kept_age ON processed_messages (processed_at) WHERE kind <> 'applied';

-- Ids this ledger already holds that have a dead letter keep the dead letters' retention; those it
-- released (not applied) are entered as dead-lettered.
UPDATE processed_messages p SET kind = 'replayed'
FROM message_failures f
WHERE f.action = 'dlq' AND f.consumer_group = p.consumer_group AND f.message_id = p.message_id;
INSERT INTO processed_messages (consumer_group, message_id, processed_at, kind)
SELECT consumer_group, message_id, max(failed_at), 'dead_lettered' FROM message_failures
WHERE action = 'dlq' AND message_id IS NOT NULL
GROUP BY consumer_group, message_id
ON CONFLICT DO NOTHING;

-- message_failures is kept as long as the dead letters it describes
CREATE INDEX message_failures_age ON message_failures (failed_at);

-- Down Migration

DROP INDEX message_failures_age;
DELETE FROM processed_messages WHERE kind = 'dead_lettered';
DROP INDEX processed_messages_kept_age;
DROP INDEX processed_messages_applied_age;
ALTER TABLE processed_messages DROP COLUMN kind;
CREATE INDEX processed_messages_age ON processed_messages (processed_at);
