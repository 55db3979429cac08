-- Up Migration

-- The outcomes' NOTIFY (1766240000000) names its transaction too: `<txid>;<id>,<id>,…`. The agent API
-- in the process whose decide consumer made the transaction holds those outcomes already (decide
-- hands them over with the transaction's id, src/api/waiter.ts), and answers from them once this
-- notification says that transaction committed, without reading them back; any other listener, or
-- an outcome of another transaction (a retry's, another member's), reads them as before. 200 ids
-- (37 bytes each) and a transaction id stay under NOTIFY's 8,000 bytes.
CREATE OR REPLACE FUNCTION notify_lifecycle_commands_decided() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  ids text[];
  tx text := txid_current()::text;
BEGIN
  SELECT array_agg(command_id::text) INTO ids FROM decided;
  IF ids IS NULL THEN
    RETURN NULL;
  END IF;
  FOR chunk IN 0 .. (array_length(ids, 1) - 1) / 200 LOOP
    PERFORM pg_notify(
      TG_TABLE_SCHEMA || '.lifecycle_commands',
      tx || ';' || array_to_string(ids[chunk * 200 + 1 : chunk * 200 + 200], ',')
    );
  END LOOP;
  RETURN NULL;
END;
$$;

-- Down Migration

CREATE OR REPLACE FUNCTION notify_lifecycle_commands_decided() RETURNS trigger
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
