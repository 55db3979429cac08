-- Up Migration

-- One row per running instance of the service (kafka-runtime `src/heartbeat.ts`), rewritten every
-- `every_ms` with its readiness (the checks `/readyz` runs, and the error tracker as the instance
-- sees it, which never decides readiness), for `shoal status`. A clean stop deletes the row; one
-- whose beat is older than a few intervals belongs to an instance that died, and is pruned after a
-- day by the instances that still beat.
CREATE TABLE instance_heartbeats (
  instance_id text PRIMARY KEY,
  consumer_group text NOT NULL,
  host text NOT NULL,
  pid integer NOT NULL,
  started_at timestamptz NOT NULL,
  beat_at timestamptz NOT NULL,
  every_ms integer NOT NULL,
  ready boolean NOT NULL,
  checks jsonb NOT NULL
);

-- Down Migration

DROP TABLE instance_heartbeats;
