-- Up Migration

-- The issue read model (issue id = group id). Only the decide consumer writes it, from
-- shoal.lifecycle-commands.v1; every time here comes from the log (a command's issued_at, or the
-- group event a system command carries), never from the clock at apply time, so a rebuild into a
-- fresh database gives the same rows.
CREATE TABLE issues (
  id bigint PRIMARY KEY,
  project_id bigint NOT NULL,
  status text NOT NULL CHECK (status IN ('new', 'triaged', 'in_progress', 'awaiting_verification',
    'resolved', 'closed', 'regressed')),
  -- +1 per lifecycle event (created is 1); observe changes telemetry without it
  version integer NOT NULL,
  severity text NOT NULL CHECK (severity IN ('critical', 'high', 'medium', 'low')),
  -- false: severity follows the level; true: someone set it (update) and it stays
  severity_set boolean NOT NULL DEFAULT false,
  category text,
  assignee text,
  -- the claim: a lease. claim_generation counts claims (the sweeper's expire_claim names one)
  claimed_by text,
  claim_token_sha256 text CHECK (claim_token_sha256 ~ '^[0-9a-f]{64}$'),
  claim_expires_at timestamptz,
  claim_generation integer NOT NULL DEFAULT 0,
  sla_due_at timestamptz,
  trace_id text,
  request_id text,
  release_sha text,
  -- {type, release, current_release, commit_shas, repository, notes, resolution_id, resolved_at}
  resolution jsonb,
  close_reason text CHECK (close_reason IN ('fixed', 'ignored', 'duplicate', 'wont_fix')),
  duplicate_of bigint,
  canonical_incident_id bigint,
  -- telemetry from group_created / group_activity
  title text,
  short_id text,
  culprit text,
  level text,
  primary_fingerprint text,
  environment text,
  release text,
  times_seen bigint NOT NULL DEFAULT 0,
  first_seen timestamptz,
  last_seen timestamptz,
  -- the group's status as grouping last reported it (status_changed), to tell an echo from a
  -- change and to set `expect` on the status changes lifecycle sends
  group_status text NOT NULL DEFAULT 'unresolved' CHECK (group_status IN ('unresolved', 'resolved', 'ignored')),
  group_resolution_id integer NOT NULL DEFAULT 0,
  group_sequence bigint NOT NULL DEFAULT -1,
  opened_at timestamptz NOT NULL,
  status_since timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  -- the decide clock for this issue: max issued_at applied (a late command never turns it back)
  clock timestamptz NOT NULL,
  -- the project is deleted (until restored)
  hidden boolean NOT NULL DEFAULT false,
  -- the group is deleted: a tombstone; the row and its history stay
  deleted_at timestamptz
);
CREATE INDEX issues_list ON issues (status, severity, id) WHERE deleted_at IS NULL AND NOT hidden;
CREATE INDEX issues_project ON issues (project_id);
CREATE INDEX issues_claim_expiry ON issues (claim_expires_at) WHERE claim_expires_at IS NOT NULL;
CREATE INDEX issues_updated ON issues (updated_at, id);

-- One row per lifecycle event of an issue (its version): transitions, claims, notes, run events,
-- field changes, annotations. in_previous_state: how long the issue had been in from_status.
CREATE TABLE issue_history (
  issue_id bigint NOT NULL REFERENCES issues (id),
  version integer NOT NULL,
  event_type text NOT NULL,
  command_id uuid NOT NULL,
  actor text NOT NULL,
  origin text NOT NULL CHECK (origin IN ('agent', 'system')),
  from_status text,
  to_status text NOT NULL,
  at timestamptz NOT NULL,
  occurred_at timestamptz,
  in_previous_state interval,
  -- what the command carried beyond the move: note, run event, resolution, changed fields
  details jsonb NOT NULL DEFAULT '{}',
  PRIMARY KEY (issue_id, version)
);

-- Every command's outcome, for the API's waiters and GET /v1/commands/{id}; never pruned.
-- outcome: applied (version is the issue's after it), ignored (a no-op: observe, an echo, an
-- older group status, a sweeper's expiry of a lease that was renewed), rejected (reason, and for
-- a refused move the moves that were allowed; version and issue are the issue as it stood).
CREATE TABLE lifecycle_commands (
  command_id uuid PRIMARY KEY,
  issue_id bigint NOT NULL,
  command text NOT NULL,
  actor text NOT NULL,
  outcome text NOT NULL CHECK (outcome IN ('applied', 'ignored', 'rejected')),
  reason text,
  detail text,
  allowed_transitions text[],
  version integer,
  -- {status, version, claimed_by, claim_expires_at} as the decision saw it
  issue jsonb,
  decided_at timestamptz NOT NULL
);
CREATE INDEX lifecycle_commands_issue ON lifecycle_commands (issue_id, decided_at);

-- Down Migration

DROP TABLE lifecycle_commands;
DROP TABLE issue_history;
DROP TABLE issues;
