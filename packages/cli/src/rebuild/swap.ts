import type { PoolClient } from '@shoal/db';
import {
  arrivalColumns,
  groupStops,
  type DeclaredStops,
  type RebuildDeclaration,
} from './declaration.js';
import { comparisonOrder } from './diff.js';
import { dropLiveIds } from './live-ids.js';
import { storedOffsets } from './snapshot.js';

/**
 * `shoal rebuild --swap`, in one transaction on an empty diff: the rebuilt schema takes the live
 * arrival-order ids (a group's id and short id, which downstream already knows) and the columns a
 * scheduled job keeps (declaration.ts `carried`), its identity sequences continue from the live
 * ones, its outbox counts as published (the live service published those events, with the same
 * ids), and then the schemas swap names: the live one becomes `<schema>_replaced` (an older one of
 * that name is dropped), the rebuilt one `<schema>`. A running service's connections name the
 * schema in `search_path`, so their next statement finds the rebuilt tables.
 *
 * Refused (SwapRefused, nothing changed) when the live group moved past the offsets the rebuild
 * stopped at (its ids for what came after would be lost: stop the service or let it idle and run
 * again) or the live outbox still has unpublished events (they would never go out).
 */
export class SwapRefused extends Error {
  override name = 'SwapRefused';
}

const q = (name: string) => `"${name}"`;

/** A value no live one has (ids and short numbers are positive), so moving ids never collides. */
function asideOf(expression: string, type: string): string {
  if (/^(smallint|integer|bigint|numeric)/.test(type)) return `(-(${expression}) - 1)`;
  if (/^(text|character varying)/.test(type)) return `(E'\\x01' || ${expression})`;
  throw new Error(`cannot carry an arrival-order column of type ${type} over`);
}

async function columnTypes(tx: PoolClient, schema: string, table: string) {
  const { rows } = await tx.query<{ column: string; type: string }>(
    `SELECT attname AS column, format_type(atttypid, atttypmod) AS type FROM pg_attribute
     WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped`,
    [`${q(schema)}.${q(table)}`],
  );
  return new Map(rows.map((r) => [r.column, r.type]));
}

export async function swapSchemas(
  tx: PoolClient,
  options: {
    declaration: RebuildDeclaration;
    live: string;
    rebuilt: string;
    group: string;
    /** Where the rebuild stopped, as declaredStops gives them. */
    stopAt: DeclaredStops;
  },
): Promise<{ replaced: string }> {
  const { declaration, live, rebuilt, group } = options;
  const stops = groupStops(declaration, group, options.stopAt);
  const L = (t: string) => `${q(live)}.${q(t)}`;
  const R = (t: string) => `${q(rebuilt)}.${q(t)}`;
  // the live consumers' chunks update their offsets in their transactions: they wait from here on
  await tx.query(`LOCK TABLE ${L('consumer_offsets')} IN EXCLUSIVE MODE`);
  const now = await storedOffsets(tx, live, Object.keys(stops));
  const moved = now.filter((r) => stops[r.group]?.[r.topic]?.[String(r.partition)] !== r.offset);
  const partitions = Object.values(stops).flatMap((topics) =>
    Object.values(topics).flatMap(Object.keys),
  );
  if (moved.length > 0 || now.length !== partitions.length)
    throw new SwapRefused(
      `the live group ${group} moved past the rebuild's stop offsets (${moved
        .slice(0, 3)
        .map(
          (r) =>
            `${declaration.groups ? `${r.group} ` : ''}${r.topic}:${r.partition} now ${r.offset}`,
        )
        .join(', ')}): stop the service or let it idle, and run the rebuild again`,
    );
  const { rows: unpublished } = await tx.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM ${L('outbox')} WHERE published_at IS NULL`,
  );
  if (unpublished[0]!.n > 0)
    throw new SwapRefused(
      `the live outbox has ${unpublished[0]!.n} unpublished rows: let the service's relay publish them and run again`,
    );

  // a table after those its key references: their ids are the live ones when its rows are matched
  for (const table of comparisonOrder(declaration).filter((t) => t.arrivalOrder)) {
    await dropLiveIds(tx, table, rebuilt);
    const [identity, ...others] = arrivalColumns(table);
    const types = await columnTypes(tx, rebuilt, table.name);
    const moving = [identity!, ...others].map((a) => a.column);
    const typeOf = (c: string) => types.get(c) ?? 'text';
    const referrers = declaration.tables.flatMap((t) =>
      Object.entries(t.references ?? {})
        .filter(([, target]) => target === table.name)
        .map(([column]) => ({ table: t.name, column })),
    );
    // foreign keys to the table would refuse the ids while they move: dropped and made again
    const { rows: foreignKeys } = await tx.query<{ name: string; on: string; definition: string }>(
      `SELECT conname AS name, conrelid::regclass::text AS on, pg_get_constraintdef(oid) AS definition
       FROM pg_constraint WHERE contype = 'f' AND confrelid = to_regclass($1)`,
      [R(table.name)],
    );
    for (const fk of foreignKeys)
      await tx.query(`ALTER TABLE ${fk.on} DROP CONSTRAINT ${q(fk.name)}`);
    const map = `rebuild_ids_${table.name}`;
    await tx.query(
      `CREATE TEMP TABLE ${q(map)} ON COMMIT DROP AS
       SELECT r.${q(identity!.column)} AS rebuilt, ${moving.map((c) => `l.${q(c)} AS ${q(`live_${c}`)}`).join(', ')}
       FROM ${R(table.name)} r JOIN ${L(table.name)} l
         ON ${table.key.map((c) => `r.${q(c)} IS NOT DISTINCT FROM l.${q(c)}`).join(' AND ')}`,
    );
    await tx.query(
      `UPDATE ${R(table.name)} SET ${moving.map((c) => `${q(c)} = ${asideOf(q(c), typeOf(c))}`).join(', ')}`,
    );
    const idType = typeOf(identity!.column);
    await tx.query(
      `UPDATE ${R(table.name)} t SET ${moving.map((c) => `${q(c)} = m.${q(`live_${c}`)}`).join(', ')}
       FROM ${q(map)} m WHERE t.${q(identity!.column)} = ${asideOf('m.rebuilt', idType)}`,
    );
    for (const ref of referrers) {
      await tx.query(
        `UPDATE ${R(ref.table)} SET ${q(ref.column)} = ${asideOf(q(ref.column), idType)}`,
      );
      await tx.query(
        `UPDATE ${R(ref.table)} t SET ${q(ref.column)} = m.${q(`live_${identity!.column}`)}
         FROM ${q(map)} m WHERE t.${q(ref.column)} = ${asideOf('m.rebuilt', idType)}`,
      );
    }
    const { rows: sequences } = await tx.query<{ live: string | null; rebuilt: string | null }>(
      `SELECT pg_get_serial_sequence($1, $3) AS live, pg_get_serial_sequence($2, $3) AS rebuilt`,
      [L(table.name), R(table.name), identity!.column],
    );
    const { live: liveSequence, rebuilt: rebuiltSequence } = sequences[0]!;
    if (liveSequence && rebuiltSequence)
      await tx.query(`SELECT setval($1, s.last_value, s.is_called) FROM ${liveSequence} s`, [
        rebuiltSequence,
      ]);
    for (const fk of foreignKeys)
      await tx.query(`ALTER TABLE ${fk.on} ADD CONSTRAINT ${q(fk.name)} ${fk.definition}`);
  }

  for (const table of declaration.tables.filter((t) => t.carried?.length)) {
    await tx.query(
      `UPDATE ${R(table.name)} r SET ${table.carried!.map((c) => `${q(c)} = l.${q(c)}`).join(', ')}
       FROM ${L(table.name)} l
       WHERE ${table.key.map((c) => `r.${q(c)} IS NOT DISTINCT FROM l.${q(c)}`).join(' AND ')}`,
    );
  }
  await tx.query(`UPDATE ${R('outbox')} SET published_at = now() WHERE published_at IS NULL`);
  const replaced = `${live}_replaced`;
  await tx.query(`DROP SCHEMA IF EXISTS ${q(replaced)} CASCADE`);
  await tx.query(`ALTER SCHEMA ${q(live)} RENAME TO ${q(replaced)}`);
  await tx.query(`ALTER SCHEMA ${q(rebuilt)} RENAME TO ${q(live)}`);
  return { replaced };
}

/** Who swapped which schema in, why, and at which offsets: a row in the CLI's own schema. */
export async function recordSwap(
  tx: PoolClient,
  swap: {
    service: string;
    schema: string;
    replaced: string;
    actor: string;
    reason: string | null;
    stopAt: DeclaredStops;
  },
): Promise<void> {
  await tx.query(`
    CREATE SCHEMA IF NOT EXISTS shoal_cli;
    CREATE TABLE IF NOT EXISTS shoal_cli.rebuild_swaps (
      id bigserial PRIMARY KEY,
      service text NOT NULL,
      schema text NOT NULL,
      replaced text NOT NULL,
      stop_at jsonb NOT NULL,
      actor text NOT NULL,
      reason text,
      swapped_at timestamptz NOT NULL DEFAULT now()
    )`);
  await tx.query(
    `INSERT INTO shoal_cli.rebuild_swaps (service, schema, replaced, stop_at, actor, reason)
     VALUES ($1, $2, $3, $4, $5, $6)`,
    [
      swap.service,
      swap.schema,
      swap.replaced,
      JSON.stringify(swap.stopAt),
      swap.actor,
      swap.reason,
    ],
  );
}
