import type { LifecycleCommand } from '@shoal/contracts';
import { publishCommands } from '../publish.js';
import { cleanupBatches, readOrphansView } from './view.js';

/**
 * Lifecycle's orphans, as its `orphans` view defines them (services/lifecycle README, "Orphans"):
 * issues not tombstoned whose group (or project) intake knows deleted, and keys parked behind a
 * head dead-lettered for an issue or group still deleted; each names
 * its issue (issue id = group id). `findLifecycleOrphans` reads the view (view.ts);
 * `lifecycleCleanups` turns them into `cleanup_orphans` system commands of at most `batchSize`
 * records of one issue, which lifecycle's decide consumer applies (an audit row each).
 */

export interface LifecycleOrphan {
  kind: NonNullable<LifecycleCommand['orphans']>[number]['kind'];
  id: string;
  issue_id: number;
  entity: string;
  why: string;
  since: string;
}

export const findLifecycleOrphans = (databaseUrl: string) =>
  readOrphansView<Omit<LifecycleOrphan, 'since'> & { since: Date }>(
    databaseUrl,
    'lifecycle',
    'SELECT kind, id, issue_id, entity, why, since FROM orphans ORDER BY issue_id, kind, id',
  );

export const lifecycleCleanups = (
  orphans: LifecycleOrphan[],
  options: { batchSize: number; actor: string; reason?: string },
): LifecycleCommand[] =>
  cleanupBatches(
    orphans,
    (o) => o.issue_id,
    options,
    (issue, batch, fields) => ({
      ...fields,
      origin: 'system',
      issue_id: issue,
      orphans: batch.map(({ kind, id }) => ({ kind, id })) as NonNullable<
        LifecycleCommand['orphans']
      >,
    }),
  );

/**
 * Keyed `orphans:<issue id>`, not by the issue: the issue's own key may be parked (its `delete`
 * behind a failed command is one way an issue becomes an orphan), and a command on it would wait
 * there too. The decide consumer locks the issue and re-checks the view, so order against the
 * issue's other commands does not matter.
 */
export const publishLifecycleCleanups = (commands: LifecycleCommand[]) =>
  publishCommands(
    'lifecycleCommands',
    commands.map((c) => ({ key: `orphans:${c.issue_id}`, commandId: c.command_id, value: c })),
  );
