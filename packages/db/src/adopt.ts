import fs from 'node:fs';
import path from 'node:path';
import { runner } from 'node-pg-migrate';
import { migrationExtensions, runnerOptions, type RunnerSettings } from './runner-options.js';

/**
 * Adoption of a deployment from before per-service schemas, where the runtime's and one service's
 * migrations ran in `public`. Before a service migrates into its schema for the first time (the
 * schema has no `pgmigrations` yet), if every migration `public.pgmigrations` lists is one of this
 * service's (its folders, the runtime's included), the relations those migrations made (tables
 * with their indexes and owned sequences, views, sequences) and `public.pgmigrations` itself move
 * into the schema in one transaction: the rows come along and no migration runs twice. Which
 * relations are theirs is learnt by applying the same migrations to an empty scratch schema.
 * Anything else in `public` stays, and a `public` listing another service's migrations is left to
 * that service. Shoal's migrations make only relations, so nothing else needs moving. Callers hold
 * the migration lock.
 */
export async function adoptFromPublic(
  settings: RunnerSettings & { schema: string },
): Promise<void> {
  const { client, dirs, schema, log } = settings;
  if (schema === 'public') return;
  const { rows: state } = await client.query<{ adopted: boolean; legacy: boolean }>(
    `SELECT to_regclass($1) IS NOT NULL AS adopted, to_regclass('public.pgmigrations') IS NOT NULL AS legacy`,
    [`"${schema}".pgmigrations`],
  );
  if (state[0]!.adopted || !state[0]!.legacy) return;
  const { rows: applied } = await client.query<{ name: string }>(
    'SELECT name FROM public.pgmigrations ORDER BY run_on, id',
  );
  const ours = new Set(migrationNames(dirs));
  const theirs = applied.filter((m) => !ours.has(m.name)).map((m) => m.name);
  if (theirs.length > 0) {
    log(`public.pgmigrations lists ${theirs.join(', ')}, not ${schema}'s: leaving public as it is`);
    return;
  }
  if (applied.length === 0) return;
  const relations = await relationsMadeBy(
    settings,
    applied.map((m) => m.name),
  );
  await client.query('BEGIN');
  try {
    await client.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
    for (const { name, kind } of relations)
      await client.query(`ALTER ${kind} public."${name}" SET SCHEMA "${schema}"`);
    await client.query(`ALTER TABLE public.pgmigrations SET SCHEMA "${schema}"`);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK');
    throw new Error(`moving ${schema}'s tables out of public: ${(error as Error).message}`, {
      cause: error,
    });
  }
  log(
    `moved ${applied.length} migrations and ${relations.map((r) => r.name).join(', ')} from public into ${schema}`,
  );
}

/** The names of the migrations in `dirs`, as node-pg-migrate gives them. */
function migrationNames(dirs: string[]): string[] {
  return dirs.flatMap((dir) =>
    fs
      .readdirSync(dir)
      .filter((file) => migrationExtensions.includes(path.extname(file).slice(1)))
      .map((file) => path.basename(file, path.extname(file))),
  );
}

const probeSchema = 'shoal_adoption_probe';
const alterKind: Record<string, string> = {
  r: 'TABLE',
  p: 'TABLE',
  v: 'VIEW',
  m: 'MATERIALIZED VIEW',
  S: 'SEQUENCE',
};

/**
 * The relations that the migrations `applied` (in order) make, learnt by applying them to a scratch
 * schema, dropped after. Throws when they are not the first of the folders' migrations.
 */
async function relationsMadeBy(
  settings: RunnerSettings,
  applied: string[],
): Promise<{ name: string; kind: string }[]> {
  const { client } = settings;
  const dropProbe = () => client.query(`DROP SCHEMA IF EXISTS ${probeSchema} CASCADE`);
  await dropProbe(); // left by a process that died probing
  try {
    const ran = await runner(
      runnerOptions(
        // silent: these are not the migrations an operator should see run
        { ...settings, schema: probeSchema, log: () => undefined },
        { direction: 'up', count: applied.length },
      ),
    );
    if (ran.some((m, i) => m.name !== applied[i]))
      throw new Error(
        `public.pgmigrations lists ${applied.join(', ')}; the folders start ${ran.map((m) => m.name).join(', ')}`,
      );
    // indexes and sequences owned by a column move with their table
    const { rows } = await client.query<{ name: string; relkind: string }>(
      `SELECT c.relname AS name, c.relkind FROM pg_class c
       WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
         AND c.relname <> 'pgmigrations'
         AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                           AND d.objid = c.oid AND d.deptype IN ('a', 'i'))
       ORDER BY c.relname`,
      [probeSchema],
    );
    return rows.map((r) => ({ name: r.name, kind: alterKind[r.relkind]! }));
  } finally {
    await dropProbe();
  }
}
