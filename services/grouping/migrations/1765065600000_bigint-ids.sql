-- Up Migration

-- Ids are bigint wherever stored: Sentry's project ids are 64-bit (16-digit ids are normal), and an
-- integer the schemas accept (up to 2^53 − 1, the most JavaScript holds exactly; the validators refuse
-- more) must never fail a cast and wedge a partition. Issue types and substatuses are unbounded integers
-- in the schemas too.
ALTER TABLE projects ALTER COLUMN id TYPE bigint;
ALTER TABLE environments ALTER COLUMN project_id TYPE bigint;
ALTER TABLE detectors ALTER COLUMN id TYPE bigint, ALTER COLUMN project_id TYPE bigint;
ALTER TABLE groups
  ALTER COLUMN project_id TYPE bigint,
  ALTER COLUMN group_type TYPE bigint,
  ALTER COLUMN substatus TYPE bigint;
ALTER TABLE group_hashes ALTER COLUMN project_id TYPE bigint;
ALTER TABLE held_occurrences ALTER COLUMN project_id TYPE bigint;
ALTER TABLE group_creation_quota
  ALTER COLUMN project_id TYPE bigint,
  ALTER COLUMN group_type TYPE bigint;

-- Down Migration
-- fails (SQLSTATE 22003) while a row holds a value beyond integer, rather than losing it
ALTER TABLE group_creation_quota
  ALTER COLUMN project_id TYPE integer,
  ALTER COLUMN group_type TYPE integer;
ALTER TABLE held_occurrences ALTER COLUMN project_id TYPE integer;
ALTER TABLE group_hashes ALTER COLUMN project_id TYPE integer;
ALTER TABLE groups
  ALTER COLUMN project_id TYPE integer,
  ALTER COLUMN group_type TYPE integer,
  ALTER COLUMN substatus TYPE integer;
ALTER TABLE detectors ALTER COLUMN id TYPE integer, ALTER COLUMN project_id TYPE integer;
ALTER TABLE environments ALTER COLUMN project_id TYPE integer;
ALTER TABLE projects ALTER COLUMN id TYPE integer;
