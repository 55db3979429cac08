import { randomUUID } from 'node:crypto';
import type { DedupCommand } from '@shoal/contracts';
import { publishCommands } from '../publish.js';
import { readOrphansView } from './view.js';

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
    'SELECT group_id::int, project_id::int, why, since FROM orphans ORDER BY project_id, group_id',
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
