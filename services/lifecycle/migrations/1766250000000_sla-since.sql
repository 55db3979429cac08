-- Up Migration

-- An issue's SLA runs from its open or its last regression (`sla_since`); `sla_set` says an agent set
-- the due time itself. An update that changes severity recomputes the due time from `sla_since`
-- unless it was set. Existing rows: since their regression when regressed now, else their open; set
-- when an `updated` history row changed sla_due_at.
ALTER TABLE issues
  ADD COLUMN sla_since timestamptz,
  ADD COLUMN sla_set boolean NOT NULL DEFAULT false;
UPDATE issues i SET
  sla_since = CASE WHEN status = 'regressed' THEN status_since ELSE opened_at END,
  sla_set = EXISTS (
    SELECT 1 FROM issue_history h
    WHERE h.issue_id = i.id AND h.event_type = 'updated' AND h.details->'changed' ? 'sla_due_at'
  );
ALTER TABLE issues ALTER COLUMN sla_since SET NOT NULL;

-- Down Migration

ALTER TABLE issues DROP COLUMN sla_since, DROP COLUMN sla_set;
