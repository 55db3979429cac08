import path from 'node:path';
import type { RunnerOption } from 'node-pg-migrate';
import type pg from 'pg';

/** node-pg-migrate as Shoal runs it, on a connection that already holds the migration lock. */

/** The files node-pg-migrate reads as migrations; a migration's name is its file name without one. */
export const migrationExtensions = ['sql', 'js', 'ts'];

export interface RunnerSettings {
  client: pg.ClientBase;
  dirs: string[];
  schema?: string;
  log: (message: string) => void;
}

/** Every folder's migrations in one order, into `schema` and its own `pgmigrations` (public when absent). */
export function runnerOptions(
  settings: RunnerSettings,
  run: { direction: 'up' | 'down'; count: number },
): RunnerOption {
  const { client, dirs, schema, log } = settings;
  return {
    ...run,
    dbClient: client,
    noLock: true,
    // several folders (the runtime's and a service's) need node-pg-migrate's glob mode
    dir: dirs.map((d) => `${path.resolve(d)}/*.{${migrationExtensions.join(',')}}`),
    useGlob: true,
    schema,
    createSchema: true,
    migrationsSchema: schema,
    createMigrationsSchema: true,
    migrationsTable: 'pgmigrations',
    checkOrder: true,
    singleTransaction: true,
    log,
    logger: { debug: () => undefined, info: log, warn: log, error: log },
  };
}
