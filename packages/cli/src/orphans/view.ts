import { randomUUID } from 'node:crypto';
import { serviceSchema, withDatabase, withServiceTransaction } from '../connections.js';

/**
 * A service's `orphans` view (its one definition of an orphan, which its cleanup command re-checks),
 * read in a READ ONLY transaction in the service's schema: an operator's report, not a service
 * reading another's tables; it works while the service is down and cannot write.
 */
export const readOrphansView = <R extends { since: Date }>(
  databaseUrl: string,
  service: string,
  select: string,
) =>
  withDatabase(databaseUrl, (pool) =>
    withServiceTransaction(pool, serviceSchema(service), databaseUrl, async (tx) => {
      await tx.query('SET TRANSACTION READ ONLY');
      const { rows } = await tx.query<R>(select);
      return rows.map((r) => ({ ...r, since: r.since.toISOString() }));
    }),
  );

/** What every service's cleanup command carries besides the records it names. */
export interface CleanupFields {
  command_id: string;
  command: 'cleanup_orphans';
  actor: string;
  reason?: string;
  issued_at: string;
}

/**
 * The cleanup commands of `orphans`: each group's records (`groupOf`, groups in first-seen order)
 * in slices of at most `batchSize`, one command each (`command`), with a fresh command id, the
 * actor, the reason and one issue time.
 */
export function cleanupBatches<O, G, C>(
  orphans: O[],
  groupOf: (o: O) => G,
  options: { batchSize: number; actor: string; reason?: string },
  command: (group: G, batch: [O, ...O[]], fields: CleanupFields) => C,
): C[] {
  const issuedAt = new Date().toISOString();
  const commands: C[] = [];
  for (const group of [...new Set(orphans.map(groupOf))]) {
    const all = orphans.filter((o) => groupOf(o) === group);
    for (let i = 0; i < all.length; i += options.batchSize)
      commands.push(
        command(group, all.slice(i, i + options.batchSize) as [O, ...O[]], {
          command_id: randomUUID(),
          command: 'cleanup_orphans',
          actor: options.actor,
          ...(options.reason !== undefined && { reason: options.reason }),
          issued_at: issuedAt,
        }),
      );
  }
  return commands;
}
