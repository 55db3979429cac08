import { randomUUID } from 'node:crypto';
import type { GroupingCommand } from '@shoal/contracts';
import { publishCommands } from '../publish.js';
import { readOrphansView } from './view.js';

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

export function groupingCleanups(
  orphans: GroupingOrphan[],
  fields: { batchSize: number; actor: string; reason?: string },
): GroupingCommand[] {
  const issuedAt = new Date().toISOString();
  const commands: GroupingCommand[] = [];
  for (const kind of [...new Set(orphans.map((o) => o.kind))]) {
    const ids = orphans.filter((o) => o.kind === kind).map((o) => o.id);
    for (let i = 0; i < ids.length; i += fields.batchSize)
      commands.push({
        command_id: randomUUID(),
        command: 'cleanup_orphans',
        orphan_kind: kind,
        ids: ids.slice(i, i + fields.batchSize) as GroupingCommand['ids'],
        actor: fields.actor,
        ...(fields.reason !== undefined && { reason: fields.reason }),
        issued_at: issuedAt,
      });
  }
  return commands;
}

export const publishGroupingCleanups = (commands: GroupingCommand[]) =>
  publishCommands(
    'groupingCommands',
    commands.map((c) => ({ key: c.orphan_kind, commandId: c.command_id, value: c })),
  );
