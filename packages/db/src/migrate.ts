import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runner } from 'node-pg-migrate';

export type RunMigration = Awaited<ReturnType<typeof runner>>[number];

/** The runtime's tables; services pass their own `migrations/` folder as well. */
export const runtimeMigrationsDir = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../migrations',
);

export interface MigrateOptions {
  databaseUrl: string;
  direction: 'up' | 'down';
  /** How many migrations to apply or revert; all pending for up, one for down, when absent. */
  count?: number;
  dirs?: string[];
  log?: (message: string) => void;
}

export async function migrate(options: MigrateOptions): Promise<RunMigration[]> {
  return runner({
    databaseUrl: options.databaseUrl,
    // several folders (the runtime's and a service's) need node-pg-migrate's glob mode
    dir: (options.dirs ?? [runtimeMigrationsDir]).map((d) => `${path.resolve(d)}/*.{sql,js,ts}`),
    useGlob: true,
    direction: options.direction,
    count: options.count ?? (options.direction === 'up' ? Infinity : 1),
    migrationsTable: 'pgmigrations',
    checkOrder: true,
    singleTransaction: true,
    advisoryLockMode: 'wait',
    log: options.log ?? (() => undefined),
    logger: options.log
      ? { debug: () => undefined, info: options.log, warn: options.log, error: options.log }
      : {
          debug: () => undefined,
          info: () => undefined,
          warn: () => undefined,
          error: () => undefined,
        },
  });
}
