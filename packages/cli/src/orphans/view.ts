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
