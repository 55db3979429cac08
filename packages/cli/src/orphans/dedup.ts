import type { DedupCommand } from '@shoal/contracts';
import { publishCommands } from '../publish.js';
import { cleanupBatches, readOrphansView } from './view.js';

/**
 * Dedup's orphans, as its `orphans` view defines them (services/dedup README, "Orphans"): members
 * of a deleted project, tombstones since the project's deletion cascaded. `findDedupOrphans` reads
 * the view (view.ts); `dedupCleanups` turns them into `cleanup_orphans` commands
 * of at most `batchSize` members of one project, which dedup applies (an audit row each).
 */

export interface DedupOrphan {
  group_id: number;
  project_id: number;
  why: string;
  since: string;
}

export const findDedupOrphans = (databaseUrl: string) =>
  readOrphansView<Omit<DedupOrphan, 'since'> & { since: Date }>(
    databaseUrl,
    'dedup',
    'SELECT group_id, project_id, why, since FROM orphans ORDER BY project_id, group_id',
  );

export const dedupCleanups = (
  orphans: DedupOrphan[],
  options: { batchSize: number; actor: string; reason?: string },
): DedupCommand[] =>
  cleanupBatches(
    orphans,
    (o) => o.project_id,
    options,
    (project, batch, fields) => ({
      ...fields,
      project_id: project,
      group_ids: batch.map((o) => o.group_id) as DedupCommand['group_ids'],
    }),
  );

export const publishDedupCleanups = (commands: DedupCommand[]) =>
  publishCommands(
    'dedupCommands',
    commands.map((c) => ({ key: `project:${c.project_id}`, commandId: c.command_id, value: c })),
  );
