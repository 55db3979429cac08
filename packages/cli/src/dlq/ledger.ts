import { withTransaction, type Pool } from '@shoal/db';

/**
 * What `shoal dlq replay` and `discard` remember, in the CLI's own schema `shoal_cli` of
 * DATABASE_URL (created on the first replay or discard, not by a migration): one row per replay
 * run (who, when, which filters, how it ended) and one row per replayed dead letter, written per
 * acknowledged batch — the checkpoint an interrupted run leaves, and what makes a later run skip
 * those records, naming the run; and one row per discarded dead letter (who, why, the key it
 * released), which `list` hides and `replay` skips.
 */

const schemaDdl = `
CREATE SCHEMA IF NOT EXISTS shoal_cli;
CREATE TABLE IF NOT EXISTS shoal_cli.dlq_replay_runs (
  id           uuid PRIMARY KEY,
  dlq_topic    text NOT NULL,
  filters      jsonb NOT NULL,
  actor        text NOT NULL,
  started_at   timestamptz NOT NULL DEFAULT now(),
  finished_at  timestamptz,
  replayed     integer NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS shoal_cli.dlq_replayed (
  dlq_topic    text NOT NULL,
  dlq_offset   bigint NOT NULL,
  run_id       uuid NOT NULL REFERENCES shoal_cli.dlq_replay_runs (id),
  message_id   text NOT NULL,
  replayed_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (dlq_topic, dlq_offset)
);
CREATE TABLE IF NOT EXISTS shoal_cli.dlq_discards (
  dlq_topic     text NOT NULL,
  dlq_offset    bigint NOT NULL,
  id            uuid NOT NULL UNIQUE,
  message_id    text NOT NULL,
  actor         text NOT NULL,
  reason        text NOT NULL,
  released_key  text,
  discarded_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (dlq_topic, dlq_offset)
);`;

export async function ensureLedger(pool: Pool): Promise<void> {
  await withTransaction(pool, async (tx) => {
    // two first runs at once would race on CREATE ... IF NOT EXISTS
    await tx.query(`SELECT pg_advisory_xact_lock(hashtext('shoal_cli.dlq_replay'))`);
    await tx.query(schemaDdl);
  });
}

export interface EarlierReplay {
  runId: string;
  actor: string;
  replayedAt: string;
}

const tableExists = async (pool: Pool, table: string) =>
  (
    await pool.query<{ found: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS found`, [
      `shoal_cli.${table}`,
    ])
  ).rows[0]!.found;

/** Whether the ledger was created (by a first replay or discard anywhere). */
export const ledgerExists = (pool: Pool): Promise<boolean> => tableExists(pool, 'dlq_replay_runs');

/** The earlier replay of each of `offsets` of `dlqTopic`; none before the first replay anywhere. */
export async function earlierReplays(
  pool: Pool,
  dlqTopic: string,
  offsets: number[],
): Promise<Map<number, EarlierReplay>> {
  if (!(await tableExists(pool, 'dlq_replayed'))) return new Map();
  const { rows } = await pool.query<{
    dlq_offset: string;
    run_id: string;
    actor: string;
    replayed_at: Date;
  }>(
    `SELECT r.dlq_offset, r.run_id, u.actor, r.replayed_at
     FROM shoal_cli.dlq_replayed r JOIN shoal_cli.dlq_replay_runs u ON u.id = r.run_id
     WHERE r.dlq_topic = $1 AND r.dlq_offset = ANY($2::bigint[])`,
    [dlqTopic, offsets],
  );
  return new Map(
    rows.map((r) => [
      Number(r.dlq_offset),
      { runId: r.run_id, actor: r.actor, replayedAt: r.replayed_at.toISOString() },
    ]),
  );
}

export async function startRun(
  pool: Pool,
  run: { id: string; dlqTopic: string; filters: object; actor: string },
): Promise<void> {
  await pool.query(
    `INSERT INTO shoal_cli.dlq_replay_runs (id, dlq_topic, filters, actor) VALUES ($1, $2, $3, $4)`,
    [run.id, run.dlqTopic, JSON.stringify(run.filters), run.actor],
  );
}

/**
 * The checkpoint of one acknowledged batch: its records, and the run's count, in one statement (so
 * one transaction and one round trip).
 */
export async function checkpoint(
  pool: Pool,
  runId: string,
  dlqTopic: string,
  batch: { dlqOffset: number; messageId: string }[],
): Promise<void> {
  await pool.query(
    `WITH recorded AS (
       INSERT INTO shoal_cli.dlq_replayed (dlq_topic, dlq_offset, run_id, message_id)
       SELECT $1, unnest($2::bigint[]), $3, unnest($4::text[])
     )
     UPDATE shoal_cli.dlq_replay_runs SET replayed = replayed + $5 WHERE id = $3`,
    [dlqTopic, batch.map((b) => b.dlqOffset), runId, batch.map((b) => b.messageId), batch.length],
  );
}

export async function finishRun(pool: Pool, runId: string): Promise<void> {
  await pool.query(`UPDATE shoal_cli.dlq_replay_runs SET finished_at = now() WHERE id = $1`, [
    runId,
  ]);
}

export interface EarlierDiscard {
  discardId: string;
  actor: string;
  reason: string;
  releasedKey: string | null;
  discardedAt: string;
}

/** The discard of each of `offsets` of `dlqTopic` that has one; none before the first discard anywhere. */
export async function earlierDiscards(
  pool: Pool,
  dlqTopic: string,
  offsets: number[],
): Promise<Map<number, EarlierDiscard>> {
  if (!(await tableExists(pool, 'dlq_discards'))) return new Map();
  const { rows } = await pool.query<{
    dlq_offset: string;
    id: string;
    actor: string;
    reason: string;
    released_key: string | null;
    discarded_at: Date;
  }>(
    `SELECT dlq_offset, id, actor, reason, released_key, discarded_at FROM shoal_cli.dlq_discards
     WHERE dlq_topic = $1 AND dlq_offset = ANY($2::bigint[])`,
    [dlqTopic, offsets],
  );
  return new Map(
    rows.map((r) => [
      Number(r.dlq_offset),
      {
        discardId: r.id,
        actor: r.actor,
        reason: r.reason,
        releasedKey: r.released_key,
        discardedAt: r.discarded_at.toISOString(),
      },
    ]),
  );
}

/** Discards, recorded once their markers were acknowledged; one already recorded is kept. */
export async function recordDiscards(
  pool: Pool,
  dlqTopic: string,
  discards: {
    id: string;
    dlqOffset: number;
    messageId: string;
    actor: string;
    reason: string;
    releasedKey: string | null;
  }[],
): Promise<void> {
  await pool.query(
    `INSERT INTO shoal_cli.dlq_discards (dlq_topic, dlq_offset, id, message_id, actor, reason, released_key)
     SELECT $1, o, i, m, a, r, k
     FROM unnest($2::bigint[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[]) AS d(o, i, m, a, r, k)
     ON CONFLICT (dlq_topic, dlq_offset) DO NOTHING`,
    [
      dlqTopic,
      discards.map((d) => d.dlqOffset),
      discards.map((d) => d.id),
      discards.map((d) => d.messageId),
      discards.map((d) => d.actor),
      discards.map((d) => d.reason),
      discards.map((d) => d.releasedKey),
    ],
  );
}
