import { describe, expect, it } from 'vitest';
import type { RebuildDeclaration } from '../src/rebuild/declaration.js';
import { diffReadModels, type Row, type TableRows } from '../src/rebuild/diff.js';

// The comparison of `shoal rebuild` (src/rebuild/diff.ts) on rows as node-postgres returns them;
// the rebuild itself, on the real stack, is test/rebuild.test.ts.

const declaration: RebuildDeclaration = {
  service: 'example',
  tables: [
    { name: 'hashes', key: ['hash'], references: { group_id: 'groups' } },
    {
      name: 'groups',
      key: ['project_id', 'primary_hash'],
      arrivalOrder: ['id', { column: 'short_number', per: ['project_id'] }],
      wallClock: ['touched_at'],
      carried: ['reported'],
    },
  ],
};

const rowsOf = (rows: Row[]): TableRows => ({ columns: Object.keys(rows[0] ?? {}), rows });
const group = (id: string, project: number, hash: string, short: string, more: Row = {}): Row => ({
  id,
  project_id: project,
  primary_hash: hash,
  short_number: short,
  title: `t-${hash}`,
  touched_at: new Date(Number(id) * 1000),
  reported: Number(id),
  ...more,
});
const models = (groups: Row[], hashes: Row[]) =>
  new Map([
    ['groups', rowsOf(groups)],
    ['hashes', rowsOf(hashes)],
  ]);

const liveModel = models(
  [group('10', 1, 'a', '1'), group('11', 2, 'b', '1'), group('12', 1, 'c', '2')],
  [
    { hash: 'a1', group_id: '10' },
    { hash: 'b1', group_id: '11' },
    { hash: 'c1', group_id: '12' },
  ],
);

describe('diffReadModels', () => {
  it('ids handed out in another order, wall-clock and job-kept columns are no difference', () => {
    const rebuilt = models(
      // c arrived before a in the rebuild: other ids and short numbers, one to one
      [group('3', 1, 'c', '1'), group('1', 2, 'b', '1'), group('2', 1, 'a', '2')].map((g) => ({
        ...g,
        touched_at: new Date(),
        reported: 0,
      })),
      [
        { hash: 'a1', group_id: '2' },
        { hash: 'b1', group_id: '1' },
        { hash: 'c1', group_id: '3' },
      ],
    );
    expect(diffReadModels(declaration, liveModel, rebuilt)).toEqual([]);
  });

  it('a reference to another group, a differing column, rows only on one side', () => {
    const rebuilt = models(
      [
        group('1', 1, 'a', '1'),
        group('2', 2, 'b', '1', { title: 'other' }),
        group('3', 1, 'd', '2'),
      ],
      [
        { hash: 'a1', group_id: '2' },
        { hash: 'b1', group_id: '2' },
      ],
    );
    expect(diffReadModels(declaration, liveModel, rebuilt)).toEqual([
      expect.objectContaining({
        table: 'groups',
        difference: 'only_live',
        key: { project_id: '1', primary_hash: 'c' },
      }),
      {
        table: 'groups',
        difference: 'different',
        key: { project_id: '2', primary_hash: 'b' },
        live: { title: 't-b' },
        rebuilt: { title: 'other' },
      },
      expect.objectContaining({
        table: 'groups',
        difference: 'only_rebuilt',
        key: { project_id: '1', primary_hash: 'd' },
      }),
      // c's group was not rebuilt: its hash cannot match
      expect.objectContaining({ table: 'hashes', difference: 'only_live', key: { hash: 'c1' } }),
      // a1 names live group 10 (rebuilt 1), but the rebuild points it at 2
      {
        table: 'hashes',
        difference: 'different',
        key: { hash: 'a1' },
        live: { group_id: '10' },
        rebuilt: { group_id: '2' },
      },
    ]);
  });

  it('arrival-order values that do not pair one to one within their scope, duplicate keys and missing columns', () => {
    const rebuilt = models(
      // a and c (project 1) both got short number 1
      [group('1', 1, 'a', '1'), group('2', 2, 'b', '1'), group('3', 1, 'c', '1', { extra: 'x' })],
      [
        { hash: 'a1', group_id: '1' },
        { hash: 'a1', group_id: '1' },
        { hash: 'b1', group_id: '2' },
        { hash: 'c1', group_id: '3' },
      ],
    );
    rebuilt.get('groups')!.columns.push('extra');
    const differences = diffReadModels(declaration, liveModel, rebuilt);
    expect(differences).toEqual([
      { table: 'groups', difference: 'column_only_rebuilt', key: { column: 'extra' } },
      {
        table: 'groups',
        difference: 'not_one_to_one',
        key: { project_id: '1', primary_hash: 'c' },
        live: { short_number: '2' },
        rebuilt: { short_number: '1' },
      },
      expect.objectContaining({
        table: 'hashes',
        difference: 'duplicate_key',
        key: { hash: 'a1' },
      }),
    ]);
  });

  it('a table referencing itself (an incident merged into another) is compared through its own ids', () => {
    const incidents: RebuildDeclaration = {
      service: 'example',
      tables: [
        {
          name: 'incidents',
          key: ['canonical_group_id'],
          arrivalOrder: ['id'],
          references: { merged_into: 'incidents' },
        },
      ],
    };
    const live = new Map([
      [
        'incidents',
        rowsOf([
          { id: '1', canonical_group_id: '7', merged_into: null },
          { id: '2', canonical_group_id: '8', merged_into: '1' },
          { id: '3', canonical_group_id: '9', merged_into: '1' },
        ]),
      ],
    ]);
    const rebuilt = new Map([
      [
        'incidents',
        rowsOf([
          { id: '5', canonical_group_id: '8', merged_into: '6' },
          { id: '6', canonical_group_id: '7', merged_into: null },
          { id: '4', canonical_group_id: '9', merged_into: '5' },
        ]),
      ],
    ]);
    expect(diffReadModels(incidents, live, rebuilt)).toEqual([
      {
        table: 'incidents',
        difference: 'different',
        key: { canonical_group_id: '9' },
        live: { merged_into: '1' },
        rebuilt: { merged_into: '5' },
      },
    ]);
  });
});
