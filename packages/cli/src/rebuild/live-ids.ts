import type { Pool, PoolClient } from '@shoal/db';
import { arrivalColumns, type RebuildDeclaration, type RebuildTable } from './declaration.js';

/**
 * A rebuilt row takes the live row's arrival-order ids as it is inserted (declaration.ts
 * `liveIds`), so messages that name a live id (a group deleted by id, a status change naming
 * `shoal.group_id`, a merge of two incidents) find the same row in the rebuild. Before the rebuild
 * starts, each such table of the shadow schema gets a copy of the live rows' match columns and ids
 * (`rebuild_live_<table>`), its identity sequence set past the live one (a row the live schema lacks
 * never takes a live id), and a BEFORE INSERT trigger that replaces the ids a row was given with the
 * earliest live ones of its match not yet in the table. `--swap` drops all three (`dropLiveIds`).
 */

const q = (name: string) => `"${name}"`;
const helper = (table: string) => `rebuild_live_${table}`;
const trigger = (table: string) => `rebuild_live_ids_${table}`;

export async function prepareLiveIds(
  pool: Pool,
  declaration: RebuildDeclaration,
  live: string,
  shadow: string,
): Promise<void> {
  for (const table of declaration.tables.filter((t) => t.liveIds)) {
    const columns = arrivalColumns(table).map((a) => a.column);
    const identity = columns[0]!;
    const match = table.liveIds!.match;
    const S = (name: string) => `${q(shadow)}.${q(name)}`;
    await pool.query(
      `CREATE TABLE ${S(helper(table.name))} AS
       SELECT ${[...match, ...columns].map(q).join(', ')} FROM ${q(live)}.${q(table.name)}`,
    );
    await pool.query(
      `CREATE INDEX ON ${S(helper(table.name))} (${match.map(q).join(', ')}, ${q(identity)})`,
    );
    await pool.query(
      `CREATE FUNCTION ${S(trigger(table.name))}() RETURNS trigger LANGUAGE plpgsql AS $$
       DECLARE found_row record;
       BEGIN
         SELECT * INTO found_row FROM ${S(helper(table.name))} l
         WHERE ${match.map((c) => `l.${q(c)} IS NOT DISTINCT FROM NEW.${q(c)}`).join(' AND ')}
           AND NOT EXISTS (SELECT 1 FROM ${S(table.name)} t WHERE t.${q(identity)} = l.${q(identity)})
         ORDER BY l.${q(identity)} LIMIT 1;
         IF FOUND THEN
           ${columns.map((c) => `NEW.${q(c)} := found_row.${q(c)};`).join('\n           ')}
         END IF;
         RETURN NEW;
       END $$`,
    );
    await pool.query(
      `CREATE TRIGGER ${q(trigger(table.name))} BEFORE INSERT ON ${S(table.name)}
       FOR EACH ROW EXECUTE FUNCTION ${S(trigger(table.name))}()`,
    );
    const { rows } = await pool.query<{ live: string | null; rebuilt: string | null }>(
      `SELECT pg_get_serial_sequence($1, $3) AS live, pg_get_serial_sequence($2, $3) AS rebuilt`,
      [`${q(live)}.${q(table.name)}`, S(table.name), identity],
    );
    if (rows[0]!.live && rows[0]!.rebuilt)
      await pool.query(`SELECT setval($1, s.last_value, s.is_called) FROM ${rows[0]!.live} s`, [
        rows[0]!.rebuilt,
      ]);
  }
}

/** What prepareLiveIds added to `table`, dropped (in the swap's transaction). */
export async function dropLiveIds(tx: PoolClient, table: RebuildTable, schema: string) {
  if (!table.liveIds) return;
  await tx.query(
    `DROP TRIGGER IF EXISTS ${q(trigger(table.name))} ON ${q(schema)}.${q(table.name)}`,
  );
  await tx.query(`DROP FUNCTION IF EXISTS ${q(schema)}.${q(trigger(table.name))}()`);
  await tx.query(`DROP TABLE IF EXISTS ${q(schema)}.${q(helper(table.name))}`);
}
