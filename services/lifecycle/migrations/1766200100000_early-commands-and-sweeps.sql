-- Up Migration

-- System commands (an incident link, a deletion, telemetry, a group status) that name an issue
-- before its `open` was applied: intake's consumers race, so these arrive first now and then. They
-- wait here, in log order, and are decided right after the issue's `open` (agent commands for an
-- issue never opened are held by the runtime instead, then dead-lettered unknown_reference).
CREATE TABLE early_commands (
  issue_id bigint NOT NULL,
  command_id uuid NOT NULL,
  "offset" bigint NOT NULL,
  command jsonb NOT NULL,
  PRIMARY KEY (issue_id, command_id)
);

-- The claims the sweeper has asked to expire (one expire_claim per issue and claim generation),
-- so a lagging decide consumer is not sent the same command every sweep; a row goes once its claim
-- has ended.
CREATE TABLE claim_sweeps (
  issue_id bigint NOT NULL,
  claim_generation integer NOT NULL,
  sent_at timestamptz NOT NULL,
  PRIMARY KEY (issue_id, claim_generation)
);

-- Down Migration

DROP TABLE claim_sweeps;
DROP TABLE early_commands;
