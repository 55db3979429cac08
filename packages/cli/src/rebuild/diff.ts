import { arrivalColumns, type RebuildDeclaration, type RebuildTable } from './declaration.js';

/**
 * The comparison of a live read model with its rebuild, table by table on the declared natural
 * keys (declaration.ts): rows only in one of them, rows whose compared columns differ, and
 * arrival-order columns whose live and rebuilt values do not pair one to one. Pure: it is given
 * every row of both sides (as node-postgres returns them) and reads nothing itself.
 */

export type Row = Record<string, unknown>;

export interface Difference {
  table: string;
  difference:
    | 'only_live'
    | 'only_rebuilt'
    | 'different'
    | 'not_one_to_one'
    | 'duplicate_key'
    | 'column_only_live'
    | 'column_only_rebuilt';
  /** The natural key's values (a reference shown as the live value). */
  key: Record<string, string | null>;
  /** For `different`: each differing column's value on each side; otherwise the whole row. */
  live?: Record<string, string | null>;
  rebuilt?: Record<string, string | null>;
}

export interface TableRows {
  columns: string[];
  rows: Row[];
}

/** A value as text, so both sides compare alike (timestamps in ISO form, json as its text). */
export function canonical(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (value instanceof Date) return value.toISOString();
  if (Buffer.isBuffer(value)) return `\\x${value.toString('hex')}`;
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

const pick = (row: Row, columns: string[]) =>
  Object.fromEntries(columns.map((c) => [c, canonical(row[c])]));

/**
 * Every table after the tables it references (other than itself), so their id mappings are there
 * when its keys and columns are translated; declaration.ts refuses a cycle.
 */
export function comparisonOrder(declaration: RebuildDeclaration): RebuildTable[] {
  const ordered: RebuildTable[] = [];
  const placed = new Set<string>();
  while (ordered.length < declaration.tables.length) {
    const next = declaration.tables.filter(
      (t) =>
        !placed.has(t.name) &&
        Object.values(t.references ?? {}).every(
          (target) => target === t.name || placed.has(target),
        ),
    );
    if (next.length === 0)
      throw new Error(`${declaration.service}: tables reference each other in a cycle`);
    for (const t of next) {
      ordered.push(t);
      placed.add(t.name);
    }
  }
  return ordered;
}

export function diffReadModels(
  declaration: RebuildDeclaration,
  live: Map<string, TableRows>,
  rebuilt: Map<string, TableRows>,
): Difference[] {
  const differences: Difference[] = [];
  /** Per table with arrival-order ids: its identity's live value → rebuilt value. */
  const idMaps = new Map<string, Map<string, string>>();
  for (const table of comparisonOrder(declaration)) {
    const l = live.get(table.name)!;
    const r = rebuilt.get(table.name)!;
    const arrival = arrivalColumns(table);
    const ignored = new Set([
      ...arrival.map((a) => a.column),
      ...(table.wallClock ?? []),
      ...(table.carried ?? []),
    ]);
    for (const c of l.columns.filter((c) => !r.columns.includes(c)))
      differences.push({ table: table.name, difference: 'column_only_live', key: { column: c } });
    for (const c of r.columns.filter((c) => !l.columns.includes(c)))
      differences.push({
        table: table.name,
        difference: 'column_only_rebuilt',
        key: { column: c },
      });
    const compared = l.columns.filter(
      (c) => r.columns.includes(c) && !ignored.has(c) && !table.key.includes(c),
    );
    const references = Object.entries(table.references ?? {});
    // a live row's references in the rebuilt ids (an unmatched one can never be equal); a table's
    // references to itself are translated once its own ids are paired, after the rows are matched
    const translated = (row: Row): Row => {
      const out = { ...row };
      for (const [col, target] of references) {
        const v = canonical(row[col]);
        const ids = idMaps.get(target);
        if (v !== null && ids) out[col] = ids.get(v) ?? `(live ${v}, not rebuilt)`;
      }
      return out;
    };
    const keyOf = (row: Row) => JSON.stringify(table.key.map((c) => canonical(row[c])));
    const index = (rows: Row[], side: 'live' | 'rebuilt', translate: (row: Row) => Row) => {
      const byKey = new Map<string, { row: Row; original: Row }>();
      for (const original of rows) {
        const row = translate(original);
        const key = keyOf(row);
        if (byKey.has(key))
          differences.push({
            table: table.name,
            difference: 'duplicate_key',
            key: pick(original, table.key),
            [side]: pick(original, l.columns),
          });
        else byKey.set(key, { row, original });
      }
      return byKey;
    };
    const liveRows = index(l.rows, 'live', translated);
    const rebuiltRows = index(r.rows, 'rebuilt', (row) => row);
    const pairs = arrival.map(() => ({
      forward: new Map<string, string>(),
      backward: new Map<string, string>(),
    }));
    const matched: { live: Row; rebuilt: Row }[] = [];
    for (const [key, { original }] of liveRows) {
      const other = rebuiltRows.get(key);
      if (!other) {
        differences.push({
          table: table.name,
          difference: 'only_live',
          key: pick(original, table.key),
          live: pick(original, l.columns),
        });
        continue;
      }
      matched.push({ live: original, rebuilt: other.row });
      arrival.forEach(({ column: c, per }, i) => {
        const scope = per.map((p) => canonical(original[p]));
        const lv = JSON.stringify([...scope, canonical(original[c])]);
        const rv = JSON.stringify([...scope, canonical(other.row[c])]);
        const { forward, backward } = pairs[i]!;
        if ((forward.get(lv) ?? rv) !== rv || (backward.get(rv) ?? lv) !== lv)
          differences.push({
            table: table.name,
            difference: 'not_one_to_one',
            key: pick(original, table.key),
            live: { [c]: canonical(original[c]) },
            rebuilt: { [c]: canonical(other.row[c]) },
          });
        forward.set(lv, rv);
        backward.set(rv, lv);
      });
    }
    // the identity has no `per`: its map's keys are JSON of one value
    if (pairs[0])
      idMaps.set(
        table.name,
        new Map(
          [...pairs[0].forward].map(([l, r]) => [
            (JSON.parse(l) as string[])[0]!,
            (JSON.parse(r) as string[])[0]!,
          ]),
        ),
      );
    for (const pair of matched) {
      const row = translated(pair.live);
      const differing = compared.filter((c) => canonical(row[c]) !== canonical(pair.rebuilt[c]));
      if (differing.length)
        differences.push({
          table: table.name,
          difference: 'different',
          key: pick(pair.live, table.key),
          live: pick(pair.live, differing),
          rebuilt: pick(pair.rebuilt, differing),
        });
    }
    for (const [key, { row }] of rebuiltRows)
      if (!liveRows.has(key))
        differences.push({
          table: table.name,
          difference: 'only_rebuilt',
          key: pick(row, table.key),
          rebuilt: pick(row, r.columns),
        });
  }
  return differences;
}
