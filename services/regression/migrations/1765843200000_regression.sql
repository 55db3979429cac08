-- Up Migration

-- Regression's own projection (DESIGN.md "Who owns what": releases-as-seen, resolutions-as-seen,
-- regression records), built only from shoal.group-events.v1 and shoal.entity-changes.v1.

-- Per group: what its status_changed events said last (sequence guards against a replayed older one),
-- the fingerprint its status changes are keyed by (group_created), and what the ignore rules count.
CREATE TABLE groups (
  id bigint PRIMARY KEY,
  project_id bigint NOT NULL,
  primary_fingerprint text,
  status text NOT NULL DEFAULT 'unresolved',
  sequence bigint NOT NULL DEFAULT 0,
  resolution_id bigint NOT NULL DEFAULT 0,
  resolution json,
  ignore json,
  ignored_at timestamptz,
  occurrences_since_ignored bigint NOT NULL DEFAULT 0,
  -- escalation: occurrences per hour before the ignore, and in the current hour since it
  times_seen bigint NOT NULL DEFAULT 0,
  first_seen timestamptz,
  rate_before_per_hour double precision NOT NULL DEFAULT 0,
  hour_started timestamptz,
  occurrences_this_hour bigint NOT NULL DEFAULT 0,
  deleted_at timestamptz
);

-- Per project and version: first seen (release_seen), announced date, commits, tombstone (entity changes).
CREATE TABLE releases (
  project_id bigint NOT NULL,
  version text NOT NULL,
  first_seen timestamptz,
  released_at timestamptz,
  commits text[],
  deleted_at timestamptz
);
CREATE UNIQUE INDEX releases_key ON releases (project_id, md5(version));

-- One proposal per group and status sequence (the state it expects): a re-run, a redelivery or a
-- second occurrence before grouping answers proposes nothing more.
CREATE TABLE regressions (
  id bigserial PRIMARY KEY,
  group_id bigint NOT NULL,
  project_id bigint NOT NULL,
  expected_sequence bigint NOT NULL,
  expected_status text NOT NULL,
  resolution_id bigint NOT NULL,
  kind text NOT NULL, -- regressed (a resolved group) or escalating (an ignored one)
  occurrence_id text NOT NULL,
  occurred_at timestamptz NOT NULL,
  decided_by text NOT NULL,
  why text NOT NULL,
  change_id text NOT NULL UNIQUE,
  flapping boolean NOT NULL,
  state text NOT NULL DEFAULT 'proposed', -- proposed, confirmed (grouping applied it), superseded (a no-op)
  -- the group was deleted (entity changes): the record stays for the audit, an orphan
  detached_at timestamptz,
  proposed_at timestamptz NOT NULL DEFAULT now(),
  settled_at timestamptz,
  UNIQUE (group_id, expected_sequence)
);
CREATE INDEX regressions_proposed ON regressions (proposed_at) WHERE state = 'proposed';
CREATE INDEX regressions_settled ON regressions (settled_at) WHERE settled_at IS NOT NULL;
CREATE INDEX regressions_group ON regressions (group_id);
CREATE INDEX regressions_flapping ON regressions (group_id, occurred_at) WHERE kind = 'regressed';

-- Down Migration
DROP TABLE regressions;
DROP TABLE releases;
DROP TABLE groups;
