-- Up Migration

-- What regression and lifecycle rely on (DESIGN.md "Who owns what"): every applied status change
-- moves the group's status_sequence by one; every resolve numbers a new resolution (resolution_id,
-- monotone per group, 0 before the first) and keeps how it was resolved. `flapping` is regression's
-- guard, kept until a change says otherwise; `ignore` how an ignore ends, as the change gave it.
-- `json`, not `jsonb`: the release and commit are any strings the schema accepts (NUL included),
-- kept exactly as they came.
ALTER TABLE groups
  ADD COLUMN status_sequence bigint NOT NULL DEFAULT 0,
  ADD COLUMN resolution_id bigint NOT NULL DEFAULT 0,
  ADD COLUMN resolution json,
  ADD COLUMN ignore json,
  ADD COLUMN flapping boolean NOT NULL DEFAULT false;

-- Down Migration
ALTER TABLE groups
  DROP COLUMN flapping,
  DROP COLUMN ignore,
  DROP COLUMN resolution,
  DROP COLUMN resolution_id,
  DROP COLUMN status_sequence;
