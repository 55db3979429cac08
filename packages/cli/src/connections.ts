import { connectionEnv, loadConfig } from '@shoal/config';
import { createPool, withTransaction, type Pool, type PoolClient } from '@shoal/db';
import { Kafka, logLevel, type Admin } from 'kafkajs';
import { NotSetUpError } from './exit.js';

/**
 * How `shoal` reaches Kafka and PostgreSQL: from KAFKA_BROKERS and DATABASE_URL (a bad one is a
 * ConfigError, exit 78), failing fast when a server is down (exit 4), and never printing the
 * database password.
 */

export const connectionsHelp = `Environment:
  DATABASE_URL    PostgreSQL (default postgres://postgres@127.0.0.1:5432/shoal)
  KAFKA_BROKERS   Kafka, comma-separated host:port (default 127.0.0.1:9092)`;

export const cliConnections = () =>
  loadConfig({
    DATABASE_URL: connectionEnv.DATABASE_URL,
    KAFKA_BROKERS: connectionEnv.KAFKA_BROKERS,
  });

/** DATABASE_URL with its password replaced by `***`, for any message or output. */
export function maskUrl(databaseUrl: string): string {
  const url = new URL(databaseUrl);
  if (url.password) url.password = '***';
  return url.toString();
}

/** `text` with every occurrence of DATABASE_URL's password masked (errors may quote it). */
export function redactSecrets(text: string, databaseUrl = process.env.DATABASE_URL): string {
  let password = '';
  try {
    password = databaseUrl ? decodeURIComponent(new URL(databaseUrl).password) : '';
  } catch {
    return text;
  }
  return password ? text.split(password).join('***') : text;
}

export { serviceSchema } from '@shoal/db';

export async function withDatabase<T>(
  databaseUrl: string,
  fn: (pool: Pool) => Promise<T>,
): Promise<T> {
  const pool = createPool(databaseUrl, { applicationName: 'shoal-cli', max: 2 });
  try {
    return await fn(pool);
  } finally {
    await pool.end();
  }
}

/** The schemas that hold the consumer runtime's tables (one per service). */
export async function runtimeSchemas(pool: Pool): Promise<string[]> {
  const { rows } = await pool.query<{ schema: string }>(
    `SELECT table_schema AS schema FROM information_schema.tables
     WHERE table_name = 'consumer_offsets' ORDER BY table_schema`,
  );
  return rows.map((r) => r.schema);
}

/**
 * One transaction with `search_path` set to the service's schema, so the runtime's tables are
 * found there. A schema without them means the service is misnamed or not migrated: exit 4.
 */
export async function withServiceTransaction<T>(
  pool: Pool,
  schema: string,
  databaseUrl: string,
  fn: (tx: PoolClient) => Promise<T>,
): Promise<T> {
  return withTransaction(pool, async (tx) => {
    await tx.query(`SET LOCAL search_path TO "${schema}"`);
    const { rows } = await tx.query<{ found: boolean }>(
      `SELECT to_regclass('consumer_offsets') IS NOT NULL AS found`,
    );
    if (!rows[0]!.found)
      throw new NotSetUpError(
        `no consumer offsets in schema "${schema}" of ${maskUrl(databaseUrl)}: is the service name right, and has it run its migrations?`,
      );
    return fn(tx);
  });
}

/** A Kafka client that gives up after a few seconds when Kafka is down (exit 4, not a hang). */
export const kafkaClient = (brokers: string[]): Kafka =>
  new Kafka({
    brokers,
    clientId: 'shoal-cli',
    logLevel: logLevel.NOTHING,
    connectionTimeout: 3_000,
    retry: { retries: 2 },
  });

/** A connected Kafka admin client for the length of `fn`. */
export async function withKafkaAdmin<T>(
  brokers: string[],
  fn: (admin: Admin) => Promise<T>,
): Promise<T> {
  const admin = kafkaClient(brokers).admin();
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.disconnect();
  }
}
