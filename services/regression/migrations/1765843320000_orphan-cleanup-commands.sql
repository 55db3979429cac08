-- Up Migration

-- Orphan cleanup arrives as commands on shoal.regression-commands.v1 (regression stays the only writer
-- of its tables): each audit row names the command that removed the record, and the operator's reason.
ALTER TABLE orphan_cleanups ADD COLUMN command_id text, ADD COLUMN reason text;

-- Down Migration
ALTER TABLE orphan_cleanups DROP COLUMN command_id, DROP COLUMN reason;
