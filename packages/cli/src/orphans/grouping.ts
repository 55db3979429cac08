import type { GroupingCommand } from '@shoal/contracts';
import { publishCommands } from '../publish.js';
import { cleanupBatches, readOrphansView } from './view.js';

/**
 * Grouping's orphans, as its `orphans` view defines them (services/grouping README, "Orphans"):
 * live groups, held occurrences, held messages and parked keys of deleted entities. `findGroupingOrphans`
 * reads the view in a READ ONLY transaction; `groupingCleanups` turns them into `cleanup_orphans`
 * commands of at most `batchSize` records of one kind, which grouping applies (an audit row each).
 */

export interface GroupingOrphan {
  kind: GroupingCommand['orphan_kind'];
  id: string;
  entity: string;
  why: string;
  since: string;
}

export const findGroupingOrphans = (databaseUrl: string) =>
  readOrphansView<Omit<GroupingOrphan, 'since'> & { since: Date }>(
    databaseUrl,
    'grouping',
    'SELECT kind, id, entity, why, since FROM orphans ORDER BY kind, since, id',
  );

export const groupingCleanups = (
  orphans: GroupingOrphan[],
  options: { batchSize: number; actor: string; reason?: string },
): GroupingCommand[] =>
  cleanupBatches(
    orphans,
    (o) => o.kind,
    options,
    (kind, batch, fields) => ({
      ...fields,
      orphan_kind: kind,
      ids: batch.map((o) => o.id) as GroupingCommand['ids'],
    }),
  );

export const publishGroupingCleanups = (commands: GroupingCommand[]) =>
  publishCommands(
    'groupingCommands',
    commands.map((c) => ({ key: c.orphan_kind, commandId: c.command_id, value: c })),
  );
