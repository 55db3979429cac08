-- Up Migration

-- The agent API's waiting replies learn their commands' outcomes from this NOTIFY (src/api/waiter.ts):
-- whenever the decide consumer records outcomes, one statement-level trigger sends the decided
-- command ids, comma-separated, on channel `<schema>.lifecycle_commands` at commit. A payload must
-- stay under 8,000 bytes: at most 200 ids (37 bytes each) per notification. NOTIFY is lost when no
-- one listens; the API polls slowly as well, so a lost one delays an answer, never loses it.
CREATE FUNCTION notify_lifecycle_commands_decided() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  ids text[];
BEGIN
  SELECT array_agg(command_id::text) INTO ids FROM decided;
  IF ids IS NULL THEN
    RETURN NULL;
  END IF;
  FOR chunk IN 0 .. (array_length(ids, 1) - 1) / 200 LOOP
    PERFORM pg_notify(
      TG_TABLE_SCHEMA || '.lifecycle_commands',
      array_to_string(ids[chunk * 200 + 1 : chunk * 200 + 200], ',')
    );
  END LOOP;
  RETURN NULL;
END;
$$;

CREATE TRIGGER lifecycle_commands_decided
AFTER INSERT ON lifecycle_commands
REFERENCING NEW TABLE AS decided
FOR EACH STATEMENT EXECUTE FUNCTION notify_lifecycle_commands_decided();

-- Down Migration

DROP TRIGGER lifecycle_commands_decided ON lifecycle_commands;
DROP FUNCTION notify_lifecycle_commands_decided();
