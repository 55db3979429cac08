-- Up Migration

-- An operator's orphan cleanup asks for a parked key to expire now (its head names an entity that
-- stays deleted, so no replay can release it): the runtime's parked expirer dead-letters its parked
-- messages in order at its next pass, as at the parked deadline; parked_at keeps its meaning.
ALTER TABLE parked_keys ADD COLUMN expiry_requested_at timestamptz;

-- Down Migration
ALTER TABLE parked_keys DROP COLUMN expiry_requested_at;
