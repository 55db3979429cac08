import { withTransaction, type Pool } from '@shoal/db';

/**
 * What `shoal dlq replay` remembers, in the CLI's own schema `shoal_cli` of DATABASE_URL (created
 * on first replay, not by a migration): one row per run (who, when, which filters, how it ended)
 * and one row per replayed dead letter, written per acknowledged batch — the checkpoint an
 * interrupted run leaves, and what makes a later run skip those records, naming the run.
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

/** The earlier replay of each of `offsets` of `dlqTopic`; none before the first replay anywhere. */
export async function earlierReplays(
  pool: Pool,
  dlqTopic: string,
  offsets: number[],
): Promise<Map<number, EarlierReplay>> {
  const { rows: exists } = await pool.query<{ found: boolean }>(
    `SELECT to_regclass('shoal_cli.dlq_replayed') IS NOT NULL AS found`,
  );
  if (!exists[0]!.found) return new Map();
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

/** The checkpoint of one acknowledged batch: its records, and the run's count, in one transaction. */
export async function checkpoint(
  pool: Pool,
  runId: string,
  dlqTopic: string,
  batch: { dlqOffset: number; messageId: string }[],
): Promise<void> {
  await withTransaction(pool, async (tx) => {
    await tx.query(
      `INSERT INTO shoal_cli.dlq_replayed (dlq_topic, dlq_offset, run_id, message_id)
       SELECT $1, unnest($2::bigint[]), $3, unnest($4::text[])`,
      [dlqTopic, batch.map((b) => b.dlqOffset), runId, batch.map((b) => b.messageId)],
    );
    await tx.query(`UPDATE shoal_cli.dlq_replay_runs SET replayed = replayed + $2 WHERE id = $1`, [
      runId,
      batch.length,
    ]);
  });
}

export async function finishRun(pool: Pool, runId: string): Promise<void> {
  await pool.query(`UPDATE shoal_cli.dlq_replay_runs SET finished_at = now() WHERE id = $1`, [
    runId,
  ]);
}
