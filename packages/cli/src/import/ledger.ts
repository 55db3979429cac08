import { withTransaction, type Pool } from '@shoal/db';

/**
 * What `shoal import` remembers, in the CLI's schema `shoal_cli` (created on first use, like the
 * replay ledger): one row per run (source, project, who, how it ended) and one row per imported
 * step of a legacy report (its occurrence, each lifecycle command), written after Kafka
 * acknowledged the batch: the checkpoint `--resume <run>` starts from. The steps' message ids make
 * a re-sent step apply once anyway; the checkpoint saves sending it.
 */

const schemaDdl = `
CREATE SCHEMA IF NOT EXISTS shoal_cli;
CREATE TABLE IF NOT EXISTS shoal_cli.import_runs (
  id           uuid PRIMARY KEY,
  source       text NOT NULL,
  project_id   bigint NOT NULL,
  actor        text NOT NULL,
  started_at   timestamptz NOT NULL DEFAULT now(),
  finished_at  timestamptz,
  reports      integer NOT NULL DEFAULT 0,
  refused      integer NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS shoal_cli.import_steps (
  run_id       uuid NOT NULL REFERENCES shoal_cli.import_runs (id),
  step_id      uuid NOT NULL,
  done_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (run_id, step_id)
);`;

export interface ImportRun {
  id: string;
  source: string;
  projectId: number;
  actor: string;
  finishedAt: Date | null;
}

export async function ensureImportLedger(pool: Pool): Promise<void> {
  await withTransaction(pool, async (tx) => {
    await tx.query(`SELECT pg_advisory_xact_lock(hashtext('shoal_cli.import'))`);
    await tx.query(schemaDdl);
  });
}

export async function startRun(pool: Pool, run: Omit<ImportRun, 'finishedAt'>): Promise<void> {
  await pool.query(
    `INSERT INTO shoal_cli.import_runs (id, source, project_id, actor) VALUES ($1, $2, $3, $4)`,
    [run.id, run.source, run.projectId, run.actor],
  );
}

export async function findRun(pool: Pool, id: string): Promise<ImportRun | undefined> {
  const { rows } = await pool.query<{
    id: string;
    source: string;
    project_id: string;
    actor: string;
    finished_at: Date | null;
  }>(`SELECT id, source, project_id, actor, finished_at FROM shoal_cli.import_runs WHERE id = $1`, [
    id,
  ]);
  const r = rows[0];
  return (
    r && {
      id: r.id,
      source: r.source,
      projectId: Number(r.project_id),
      actor: r.actor,
      finishedAt: r.finished_at,
    }
  );
}

export async function doneSteps(pool: Pool, runId: string): Promise<Set<string>> {
  const { rows } = await pool.query<{ step_id: string }>(
    `SELECT step_id FROM shoal_cli.import_steps WHERE run_id = $1`,
    [runId],
  );
  return new Set(rows.map((r) => r.step_id));
}

/** The checkpoint after Kafka acknowledged a batch of steps. */
export async function markDone(pool: Pool, runId: string, stepIds: string[]): Promise<void> {
  await pool.query(
    `INSERT INTO shoal_cli.import_steps (run_id, step_id) SELECT $1, unnest($2::uuid[])
     ON CONFLICT DO NOTHING`,
    [runId, stepIds],
  );
}

export async function finishRun(
  pool: Pool,
  runId: string,
  counts: { reports: number; refused: number },
): Promise<void> {
  await pool.query(
    `UPDATE shoal_cli.import_runs SET finished_at = now(), reports = $2, refused = $3 WHERE id = $1`,
    [runId, counts.reports, counts.refused],
  );
}
