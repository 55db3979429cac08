import { randomUUID } from 'node:crypto';
import type { RegressionCommand } from '@shoal/contracts';
import { serviceSchema, withDatabase, withServiceTransaction } from '../connections.js';
import { publishCommands } from '../publish.js';

/**
 * Orphaned regression records (services/regression README, "Tables"): a record whose group was
 * deleted (`detached_at`), or a proposal grouping never answered within the deadline.
 * `findOrphans` reads them in a READ ONLY transaction (an operator's report, not a service reading
 * another's tables: it works while regression is down, and cannot write). Removing them is
 * regression's own work: `cleanupCommands` turns them into `cleanup_orphans` commands, one per
 * group, which `publishCleanups` sends on `shoal.regression-commands.v1`; regression removes each
 * record that is still an orphan when it applies one, with its audit row, in its own transaction.
 */

export interface Orphan {
  id: number;
  group_id: number;
  project_id: number;
  change_id: string;
  why: 'group_deleted' | 'unconfirmed';
  state: string;
  proposed_at: string;
  detached_at: string | null;
}

const ORPHANS = `
  SELECT id, group_id, project_id, change_id, state, proposed_at, detached_at,
         CASE WHEN detached_at IS NOT NULL THEN 'group_deleted' ELSE 'unconfirmed' END AS why
  FROM regressions
  WHERE detached_at IS NOT NULL
     OR (state = 'proposed' AND proposed_at < now() - make_interval(secs => $1))
  ORDER BY id`;

const iso = (v: unknown) => (v instanceof Date ? v.toISOString() : (v as string | null));

export const findOrphans = (databaseUrl: string, deadlineSeconds: number) =>
  withDatabase(databaseUrl, (pool) =>
    withServiceTransaction(pool, serviceSchema('regression'), databaseUrl, async (tx) => {
      await tx.query('SET TRANSACTION READ ONLY');
      const { rows } = await tx.query<Orphan>(ORPHANS, [deadlineSeconds]);
      return rows.map((r) => ({
        ...r,
        proposed_at: iso(r.proposed_at)!,
        detached_at: iso(r.detached_at),
      }));
    }),
  );

/** One `cleanup_orphans` command per group, naming that group's orphans by change id. */
export function cleanupCommands(
  orphans: Orphan[],
  fields: { deadlineSeconds: number; actor: string; reason?: string },
): RegressionCommand[] {
  const byGroup = new Map<number, RegressionCommand['change_ids']>();
  for (const o of orphans) {
    const named = byGroup.get(o.group_id);
    if (named) named.push(o.change_id);
    else byGroup.set(o.group_id, [o.change_id]);
  }
  const issuedAt = new Date().toISOString();
  return [...byGroup].map(([groupId, changeIds]) => ({
    command_id: randomUUID(),
    command: 'cleanup_orphans',
    group_id: groupId,
    change_ids: changeIds,
    deadline_seconds: fields.deadlineSeconds,
    actor: fields.actor,
    ...(fields.reason !== undefined && { reason: fields.reason }),
    issued_at: issuedAt,
  }));
}

/** Publishes the commands (keyed by group id) and returns the topic. */
export const publishCleanups = (commands: RegressionCommand[]) =>
  publishCommands(
    'regressionCommands',
    commands.map((c) => ({ key: String(c.group_id), commandId: c.command_id, value: c })),
  );
