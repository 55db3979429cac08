import { randomUUID } from 'node:crypto';
import type { DedupCommand } from '@shoal/contracts';
import { serviceSchema, withDatabase, withServiceTransaction } from '../connections.js';
import { publishCommands } from '../publish.js';

/**
 * Dedup's orphans, as its `orphans` view defines them (services/dedup README, "Orphans"): members
 * of a deleted project, tombstones since the project's deletion cascaded. `findDedupOrphans` reads
 * the view in a READ ONLY transaction; `dedupCleanups` turns them into `cleanup_orphans` commands
 * of at most `batchSize` members of one project, which dedup applies (an audit row each).
 */

export interface DedupOrphan {
  group_id: number;
  project_id: number;
  why: string;
  since: string;
}

export const findDedupOrphans = (databaseUrl: string) =>
  withDatabase(databaseUrl, (pool) =>
    withServiceTransaction(pool, serviceSchema('dedup'), databaseUrl, async (tx) => {
      await tx.query('SET TRANSACTION READ ONLY');
      const { rows } = await tx.query<Omit<DedupOrphan, 'since'> & { since: Date }>(
        'SELECT group_id::int, project_id::int, why, since FROM orphans ORDER BY project_id, group_id',
      );
      return rows.map((r) => ({ ...r, since: r.since.toISOString() }));
    }),
  );

export function dedupCleanups(
  orphans: DedupOrphan[],
  fields: { batchSize: number; actor: string; reason?: string },
): DedupCommand[] {
  const issuedAt = new Date().toISOString();
  const commands: DedupCommand[] = [];
  for (const project of [...new Set(orphans.map((o) => o.project_id))]) {
    const ids = orphans.filter((o) => o.project_id === project).map((o) => o.group_id);
    for (let i = 0; i < ids.length; i += fields.batchSize)
      commands.push({
        command_id: randomUUID(),
        command: 'cleanup_orphans',
        project_id: project,
        group_ids: ids.slice(i, i + fields.batchSize) as [number, ...number[]],
        actor: fields.actor,
        ...(fields.reason !== undefined && { reason: fields.reason }),
        issued_at: issuedAt,
      });
  }
  return commands;
}

export const publishDedupCleanups = (commands: DedupCommand[]) =>
  publishCommands(
    'dedupCommands',
    commands.map((c) => ({ key: `project:${c.project_id}`, commandId: c.command_id, value: c })),
  );
