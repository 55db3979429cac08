import type { PoolClient } from '@shoal/db';
import { serviceSchema, withDatabase, withServiceTransaction } from '../connections.js';

/**
 * Orphaned regression records (services/regression README, "Tables"): a record whose group was
 * deleted (`detached_at`), or a proposal grouping never answered within the deadline. `findOrphans`
 * only reads; `removeOrphans` deletes them and writes one `orphan_cleanups` audit row each (the
 * record as it was, who, why), in one transaction, in regression's schema.
 */

export interface Orphan {
  id: number;
  group_id: number;
  project_id: number;
  why: 'group_deleted' | 'unconfirmed';
  state: string;
  proposed_at: string;
  detached_at: string | null;
}

const ORPHANS = `
  SELECT id::int, group_id::int, project_id::int, state, proposed_at, detached_at,
         CASE WHEN detached_at IS NOT NULL THEN 'group_deleted' ELSE 'unconfirmed' END AS why
  FROM regressions
  WHERE detached_at IS NOT NULL
     OR (state = 'proposed' AND proposed_at < now() - make_interval(secs => $1))
  ORDER BY id`;

const iso = (v: unknown) => (v instanceof Date ? v.toISOString() : (v as string | null));

async function orphansIn(
  tx: PoolClient,
  deadlineSeconds: number,
  lock: boolean,
): Promise<Orphan[]> {
  const { rows } = await tx.query<Orphan>(`${ORPHANS}${lock ? ' FOR UPDATE' : ''}`, [
    deadlineSeconds,
  ]);
  return rows.map((r) => ({
    ...r,
    proposed_at: iso(r.proposed_at)!,
    detached_at: iso(r.detached_at),
  }));
}

export const findOrphans = (databaseUrl: string, deadlineSeconds: number) =>
  withDatabase(databaseUrl, (pool) =>
    withServiceTransaction(pool, serviceSchema('regression'), databaseUrl, (tx) =>
      orphansIn(tx, deadlineSeconds, false),
    ),
  );

export const removeOrphans = (databaseUrl: string, deadlineSeconds: number, actor: string) =>
  withDatabase(databaseUrl, (pool) =>
    withServiceTransaction(pool, serviceSchema('regression'), databaseUrl, async (tx) => {
      const orphans = await orphansIn(tx, deadlineSeconds, true);
      if (orphans.length)
        await tx.query(
          `WITH gone AS (DELETE FROM regressions WHERE id = ANY($1::bigint[]) RETURNING *)
           INSERT INTO orphan_cleanups (regression_id, group_id, why, record, actor)
           SELECT gone.id, gone.group_id,
                  CASE WHEN gone.detached_at IS NOT NULL THEN 'group_deleted' ELSE 'unconfirmed' END,
                  to_jsonb(gone), $2
           FROM gone`,
          [orphans.map((o) => o.id), actor],
        );
      return orphans;
    }),
  );
