import pg from 'pg';
import { checkedSchema } from './schema.js';

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;

export interface PoolOptions {
  /** Shown in pg_stat_activity, so an operator can tell Shoal's processes apart. */
  applicationName?: string;
  max?: number;
  /**
   * The schema (a service's, from `serviceSchema`) that every connection's `search_path` names, so
   * unqualified SQL reads and writes that service's tables only; the server's default (`public`)
   * when absent.
   */
  schema?: string;
}

// bigint columns (ids, offsets, counters) come back as JS numbers, exactly: the contracts' validators refuse
// integers beyond 2^53 − 1, so no id stored from a message is larger
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value));

export function createPool(databaseUrl: string, options: PoolOptions = {}): Pool {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    application_name: options.applicationName ?? 'shoal',
    max: options.max ?? 10,
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: 5_000,
    ...(options.schema === undefined
      ? {}
      : { options: `-c search_path=${checkedSchema(options.schema)}` }),
  });
  // A connection lost (server restart, terminated backend) must never crash the process. The
  // pool hears idle clients' errors and drops them; every client also gets a listener of its own,
  // because pg-pool leaves short windows (e.g. between a pool.query and the next checkout) where a
  // client emitting 'error' has none. The query in flight still rejects; that is what callers handle.
  pool.on('error', () => undefined);
  pool.on('connect', (client) => client.on('error', () => undefined));
  return pool;
}

/**
 * Runs `fn` in one transaction: committed when it resolves, rolled back when it throws. `first`, a
 * statement without parameters (values inlined with `pg.escapeLiteral`), is sent with BEGIN in one
 * round trip and its result handed to `fn`: a transaction's opening lock costs no extra round trip.
 */
export async function withTransaction<T>(
  pool: Pool,
  fn: (client: PoolClient, first: pg.QueryResult | undefined) => Promise<T>,
  first?: string,
): Promise<T> {
  const client = await pool.connect();
  try {
    // a simple query of two statements answers with one result each
    const opened = first
      ? ((await client.query(`BEGIN; ${first}`)) as unknown as pg.QueryResult[])[1]
      : (await client.query('BEGIN'), undefined);
    const result = await fn(client, opened);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}
