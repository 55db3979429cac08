import type { Pool, PoolClient } from '@shoal/db';
import { maskUrl } from '../connections.js';
import { NotSetUpError } from '../exit.js';
import type { RebuildDeclaration } from './declaration.js';
import type { TableRows } from './diff.js';

/** Per topic and partition, the next offset to apply: where a group stands. */
export type StopOffsets = Record<string, Record<string, number>>;

/** Per live consumer group (the service's one, or each of its groups), its stop offsets. */
export type GroupStops = Record<string, StopOffsets>;

/**
 * The comparison's snapshot of the live schema: one REPEATABLE READ, READ ONLY transaction, opened
 * before the rebuild starts and held until its tables are read, so the stop offsets and the live
 * rows it is compared with are one consistent state, however far the live service moves meanwhile.
 * `close` ends it (always call it).
 */
export interface LiveSnapshot {
  stopAt: GroupStops;
  tables(declaration: RebuildDeclaration): Promise<Map<string, TableRows>>;
  close(): Promise<void>;
}

export async function openLiveSnapshot(
  pool: Pool,
  options: { schema: string; groups: string[]; databaseUrl: string },
): Promise<LiveSnapshot> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const { rows: found } = await client.query<{ found: boolean }>(
      `SELECT to_regclass($1) IS NOT NULL AS found`,
      [`"${options.schema}".consumer_offsets`],
    );
    if (!found[0]!.found)
      throw new NotSetUpError(
        `no consumer offsets in schema "${options.schema}" of ${maskUrl(options.databaseUrl)}: is the service name right, and has it run?`,
      );
    const rows = await storedOffsets(client, options.schema, options.groups);
    if (rows.length === 0)
      throw new NotSetUpError(
        `${options.groups.length > 1 ? `groups ${options.groups.join(', ')} have` : `group ${options.groups[0]} has`} no offsets in schema "${options.schema}": name the live group with --group`,
      );
    // a group of several that never applied anything has nothing to rebuild
    const stopAt: GroupStops = Object.fromEntries(options.groups.map((g) => [g, {}]));
    for (const r of rows) (stopAt[r.group]![r.topic] ??= {})[String(r.partition)] = r.offset;
    return {
      stopAt,
      tables: (declaration) => readTables(client, options.schema, declaration),
      close: async () => {
        await client.query('ROLLBACK').catch(() => undefined);
        client.release();
      },
    };
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    client.release();
    throw error;
  }
}

/** The offsets `groups` stored in `schema` (each partition's next offset to apply). */
export async function storedOffsets(
  client: Pool | PoolClient,
  schema: string,
  groups: string[],
): Promise<{ group: string; topic: string; partition: number; offset: number }[]> {
  const { rows } = await client.query<{
    group: string;
    topic: string;
    partition: number;
    offset: string;
  }>(
    `SELECT consumer_group AS "group", topic, partition, next_offset::text AS "offset"
     FROM "${schema}".consumer_offsets WHERE consumer_group = ANY($1)`,
    [groups],
  );
  return rows.map((r) => ({ ...r, offset: Number(r.offset) }));
}

/** Every row of each declared table of `schema`, with its columns (a missing table is named). */
export async function readTables(
  client: Pool | PoolClient,
  schema: string,
  declaration: RebuildDeclaration,
): Promise<Map<string, TableRows>> {
  const tables = new Map<string, TableRows>();
  for (const { name } of declaration.tables) {
    const { rows: exists } = await client.query<{ found: boolean }>(
      `SELECT to_regclass($1) IS NOT NULL AS found`,
      [`"${schema}"."${name}"`],
    );
    if (!exists[0]!.found)
      throw new NotSetUpError(
        `table ${name}, declared in ${declaration.service}'s rebuild.json, is not in schema "${schema}"`,
      );
    const result = await client.query(`SELECT * FROM "${schema}"."${name}"`);
    tables.set(name, { columns: result.fields.map((f) => f.name), rows: result.rows as never });
  }
  return tables;
}
