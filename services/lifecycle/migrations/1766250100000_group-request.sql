-- Up Migration

-- The id of the last conditional status change lifecycle sent grouping for the issue (its event id
-- on shoal.status-changes.v1). Grouping's status_change_noop names the change it did not apply; only
-- a noop of the last one asked for moves the issue to what the group holds (a later request's own
-- answer settles an earlier one's).
ALTER TABLE issues ADD COLUMN group_request_id uuid;

-- Down Migration

ALTER TABLE issues DROP COLUMN group_request_id;
