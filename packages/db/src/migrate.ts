import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PG_MIGRATE_LOCK_ID, runner } from 'node-pg-migrate';
import pg from 'pg';
import { adoptFromPublic } from './adopt.js';
import { runnerOptions } from './runner-options.js';
import { checkedSchema } from './schema.js';

export type RunMigration = Awaited<ReturnType<typeof runner>>[number];

/**
 * The `migrations/` folder of the package whose module this is (`import.meta.url`): beside its
 * `src/` when run from source, its `dist/` when built.
 */
export const migrationsDirBeside = (moduleUrl: string): string =>
  path.resolve(path.dirname(fileURLToPath(moduleUrl)), '..', 'migrations');

/** The runtime's tables; services pass their own `migrations/` folder as well. */
export const runtimeMigrationsDir = migrationsDirBeside(import.meta.url);

export interface MigrateOptions {
  databaseUrl: string;
  direction: 'up' | 'down';
  /** How many migrations to apply or revert; all pending for up, one for down, when absent. */
  count?: number;
  dirs?: string[];
  /**
   * The schema (a service's, from `serviceSchema`) that the migrations' tables and their
   * `pgmigrations` live in, created when missing; `public` when absent.
   */
  schema?: string;
  log?: (message: string) => void;
}

/**
 * Refuses folders in which two migrations share a timestamp: node-pg-migrate would order them by
 * name alone, so the runtime's and a service's could run in either order.
 */
export function assertDistinctTimestamps(dirs: string[]): void {
  const seen = new Map<string, string>();
  for (const dir of dirs)
    for (const file of readdirSync(dir)) {
      const timestamp = /^(\d+)_/.exec(file)?.[1];
      if (timestamp === undefined) continue;
      const here = path.join(dir, file);
      const other = seen.get(timestamp);
      if (other !== undefined)
        throw new Error(
          `migrations ${other} and ${here} share the timestamp ${timestamp}: give the newer one a later timestamp`,
        );
      seen.set(timestamp, here);
    }
}

/**
 * Applies or reverts migrations under node-pg-migrate's advisory lock, held over the whole run so
 * that processes of one service starting together adopt a pre-schema deployment once (`adopt.ts`).
 */
export async function migrate(options: MigrateOptions): Promise<RunMigration[]> {
  const log = options.log ?? (() => undefined);
  const dirs = (options.dirs ?? [runtimeMigrationsDir]).map((d) => path.resolve(d));
  assertDistinctTimestamps(dirs);
  const schema = options.schema === undefined ? undefined : checkedSchema(options.schema);
  const client = new pg.Client({ connectionString: options.databaseUrl });
  await client.connect();
  try {
    // a session lock: ending the connection releases it, whatever happened before
    await client.query('SELECT pg_advisory_lock($1::bigint)', [String(PG_MIGRATE_LOCK_ID)]);
    if (schema !== undefined) await adoptFromPublic({ client, dirs, schema, log });
    return await runner(
      runnerOptions(
        { client, dirs, schema, log },
        {
          direction: options.direction,
          count: options.count ?? (options.direction === 'up' ? Infinity : 1),
        },
      ),
    );
  } finally {
    await client.end();
  }
}
