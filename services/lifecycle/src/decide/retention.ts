import { deleteInBatches, type Pruned, type ServiceRetention } from '@shoal/kafka-runtime';

/**
 * The decide consumer's retention, run by the runtime's pruner. `lifecycle_commands` is never
 * pruned (a command's outcome stays readable). `claim_sweeps` prunes itself each sweep. An early
 * command (a system command for an issue whose open has not come) normally waits seconds; one
 * still waiting after `earlyDays` names an issue that will never open (its group was deleted before
 * intake saw it created, so intake refused the group_created as a stale reference): it is dropped,
 * counted in the pruner's log line.
 */
export const decideRetention =
  (earlyDays = 7): ServiceRetention =>
  async (pool, batch): Promise<Pruned> => ({
    early_commands: await deleteInBatches(
      pool,
      'early_commands',
      `SELECT ctid FROM early_commands
       WHERE (command->>'issued_at')::timestamptz < now() - make_interval(days => $2) LIMIT $1`,
      [earlyDays],
      batch,
    ),
  });
