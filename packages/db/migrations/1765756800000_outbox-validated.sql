-- Up Migration

-- Whether the row's events were validated against their topic's schema when they were emitted (the
-- runtime's `ctx.emit` and scheduled jobs validate every event): the relay then encodes them without
-- validating again. Rows written otherwise (false) are validated by the relay, which sets aside any
-- event that fails.
ALTER TABLE outbox ADD COLUMN validated boolean NOT NULL DEFAULT false;

-- Down Migration

ALTER TABLE outbox DROP COLUMN validated;
