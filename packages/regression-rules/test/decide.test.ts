import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  compareReleases,
  decide,
  defaultDecideOptions,
  type GroupState,
  type Release,
  type Resolution,
} from '../src/index.js';

const RESOLVED_AT = '2026-11-01T10:00:00.000Z';
const after = (seconds: number) => new Date(Date.parse(RESOLVED_AT) + seconds * 1000).toISOString();

/** The project's releases: semver ones, and two named by date only (nightly-b first seen after nightly-a). */
const releases: Release[] = [
  { version: 'web@1.2.0', date_added: '2026-10-01T00:00:00Z', commits: ['aaa111'] },
  { version: 'web@1.3.0', date_added: '2026-10-05T00:00:00Z', commits: ['bbb222'] },
  { version: 'web@1.10.0', date_added: '2026-09-01T00:00:00Z' }, // added earliest, newest by semver
  { version: '2.0.0-rc.2', date_added: '2026-10-10T00:00:00Z' },
  { version: '2.0.0-rc.10', date_added: '2026-10-09T00:00:00Z' },
  { version: '2.0.0+build.1', date_added: '2026-10-11T00:00:00Z' },
  { version: '2.0.0+build.2', date_added: '2026-10-12T00:00:00Z' },
  { version: 'nightly-a', date_added: '2026-10-20T00:00:00Z', commits: ['ccc333'] },
  { version: 'nightly-b', date_added: '2026-10-21T00:00:00Z', deleted: true },
  { version: 'nightly-c', date_added: '2026-10-22T00:00:00Z' },
];

const resolved = (resolution: Omit<Resolution, 'resolved_at'>): GroupState => ({
  status: 'resolved',
  resolution: { resolved_at: RESOLVED_AT, ...resolution },
});

/**
 * Each resolution type × ordering × outcome. The same table is in services/regression/README.md
 * ("The decision"); the last test holds the two together.
 * [resolution, event release, seconds after the resolution, regressed, decided_by]
 */
const table: [Omit<Resolution, 'resolved_at'>, string | null, number, boolean, string][] = [
  [{ type: 'in_release', release: 'web@1.2.0' }, 'web@1.3.0', 60, true, 'semver'],
  [{ type: 'in_release', release: 'web@1.2.0' }, 'web@1.2.0', 60, false, 'semver'],
  [{ type: 'in_release', release: 'web@1.3.0' }, 'web@1.2.0', 60, false, 'semver'],
  [{ type: 'in_release', release: 'web@1.3.0' }, 'web@1.10.0', 60, true, 'semver'],
  [{ type: 'in_release', release: '2.0.0-rc.2' }, '2.0.0-rc.10', 60, true, 'semver'],
  [{ type: 'in_release', release: '2.0.0-rc.10' }, '2.0.0', 60, true, 'semver'],
  [{ type: 'in_release', release: '2.0.0+build.1' }, '2.0.0+build.2', 60, true, 'semver'],
  [{ type: 'in_release', release: '2.0.0+build.2' }, '2.0.0+build.1', 60, false, 'semver'],
  [{ type: 'in_release', release: 'nightly-a' }, 'nightly-c', 60, true, 'date'],
  [{ type: 'in_release', release: 'nightly-c' }, 'nightly-a', 60, false, 'date'],
  [{ type: 'in_release', release: 'nightly-b' }, 'nightly-a', 60, false, 'date'],
  [{ type: 'in_release', release: 'nightly-a' }, 'nightly-b', 60, true, 'date'],
  [{ type: 'in_release', release: 'nightly-a' }, 'nightly-z', 60, false, 'release_unknown'],
  [{ type: 'in_release', release: 'web@1.2.0' }, null, 60, false, 'no_release'],
  [
    { type: 'in_release', release: 'web@1.2.0' },
    'web@1.3.0',
    -60,
    false,
    'timestamp_before_resolution',
  ],
  [
    { type: 'in_next_release', current_release_version: 'web@1.2.0' },
    'web@1.3.0',
    60,
    true,
    'semver',
  ],
  [
    { type: 'in_next_release', current_release_version: 'web@1.2.0' },
    'web@1.2.0',
    60,
    false,
    'semver',
  ],
  [
    { type: 'in_next_release', current_release_version: 'nightly-a' },
    'nightly-c',
    60,
    true,
    'date',
  ],
  [
    { type: 'in_next_release', current_release_version: null },
    'web@1.3.0',
    60,
    false,
    'release_unknown',
  ],
  [
    { type: 'in_next_release', current_release_version: 'web@1.2.0' },
    null,
    60,
    false,
    'no_release',
  ],
  [{ type: 'in_commit', commit: 'bbb222' }, 'web@1.10.0', 60, true, 'semver'],
  [{ type: 'in_commit', commit: 'bbb222' }, 'web@1.3.0', 60, false, 'semver'],
  [{ type: 'in_commit', commit: 'ccc333' }, 'nightly-c', 60, true, 'date'],
  [{ type: 'in_commit', commit: 'fff999' }, 'web@1.10.0', 60, false, 'commit_pending'],
  [{ type: 'now' }, 'web@1.2.0', 60, true, 'grace'],
  [{ type: 'now' }, null, 60, true, 'grace'],
  [{ type: 'now' }, 'web@1.2.0', 3, false, 'grace'],
  [{ type: 'now' }, 'web@1.2.0', -1, false, 'timestamp_before_resolution'],
];

describe('the decision, per resolution type × ordering', () => {
  it.each(table)(
    '%j, event from %s at +%i s → regressed %s by %s',
    (resolution, release, at, regressed, by) => {
      const d = decide(resolved(resolution), { release, timestamp: after(at) }, releases);
      expect({ regressed: d.regressed, decided_by: d.decided_by }).toEqual({
        regressed,
        decided_by: by,
      });
      expect(d.why).toMatch(/\w/);
    },
  );

  it('the service README shows this table, row by row: resolution, event release and time, outcome', () => {
    const readme = fs.readFileSync(
      new URL('../../../services/regression/README.md', import.meta.url),
      'utf8',
    );
    const header = '| resolution ';
    const lines = readme.split('\n');
    const start = lines.findIndex((l) => l.startsWith(header));
    expect(start).toBeGreaterThan(-1);
    const rows = lines
      .slice(start + 2)
      .filter((_, i, all) => all.slice(0, i + 1).every((l) => l.startsWith('|')))
      .map((l) =>
        l
          .split('|')
          .slice(1, -1)
          .map((c) => c.trim()),
      );
    // the first word after a backticked name, and the first backticked name
    const named = (cell: string) => /`[^`]+`\s*\(?([^\s()]+)/.exec(cell)?.[1];
    const ticked = (cell: string) => /`([^`]+)`/.exec(cell)?.[1];
    expect(
      rows.map(([resolution, event, regressed, by]) => {
        const [release, when] = event!.split(',').map((p) => p.trim());
        return {
          type: ticked(resolution!),
          names: named(resolution!),
          release: release === 'no release' ? null : release!.split(' ')[0],
          before: when!.includes('before'),
          within: /^\d+ s after$/.test(when!) ? Number.parseInt(when!, 10) : undefined,
          regressed: regressed === 'yes',
          by: ticked(by!),
        };
      }),
    ).toEqual(
      table.map(([resolution, release, at, regressed, by]) => ({
        type: resolution.type,
        names:
          resolution.release ??
          resolution.current_release_version ??
          resolution.commit ??
          (resolution.type === 'in_next_release' ? 'unknown' : undefined),
        release: release === null ? null : resolution.type === 'now' ? 'any' : release,
        before: at < 0,
        within: resolution.type === 'now' && at > 0 ? at : undefined,
        regressed,
        by,
      })),
    );
  });

  it('a group not resolved (or resolved without a resolution) is not_resolved', () => {
    expect(
      decide({ status: 'unresolved' }, { release: 'web@1.3.0', timestamp: after(60) }, releases),
    ).toMatchObject({
      regressed: false,
      decided_by: 'not_resolved',
    });
  });

  it('deleting the resolving release keeps its place: an older release still does not regress', () => {
    const withoutTombstone = releases.filter((r) => r.version !== 'nightly-b');
    const group = resolved({ type: 'in_release', release: 'nightly-b' });
    const event = { release: 'nightly-a', timestamp: after(60) };
    expect(decide(group, event, releases).regressed).toBe(false);
    // had the tombstone been dropped, the order is lost: never a regression, but never decided by date either
    expect(decide(group, event, withoutTombstone).decided_by).toBe('release_unknown');
  });

  it('the grace period is configurable', () => {
    const group = resolved({ type: 'now' });
    const event = { release: null, timestamp: after(30) };
    expect(decide(group, event, [], { ...defaultDecideOptions, graceSeconds: 60 }).regressed).toBe(
      false,
    );
    expect(decide(group, event, [], defaultDecideOptions).regressed).toBe(true);
  });

  it('orders package@version and plain versions; different packages fall back to first-seen time', () => {
    const byVersion = new Map(releases.map((r) => [r.version, r]));
    expect(compareReleases('web@1.10.0', 'web@1.3.0', byVersion)).toEqual({
      order: 1,
      by: 'semver',
    });
    expect(compareReleases('2.0.0-rc.10', '2.0.0-rc.2', byVersion)).toEqual({
      order: 1,
      by: 'semver',
    });
    // web@1.10.0 was added before 2.0.0-rc.2: plain vs package@ are different packages
    expect(compareReleases('web@1.10.0', '2.0.0-rc.2', byVersion)).toEqual({
      order: -1,
      by: 'date',
    });
  });
});

describe('ignored groups come back (escalating)', () => {
  const ignored = (ignore: GroupState['ignore'], extra: Partial<GroupState> = {}): GroupState => ({
    status: 'ignored',
    ignore,
    ...extra,
  });
  const event = { release: null, timestamp: after(60) };

  it.each([
    [ignored({ until_occurrences: 3 }, { occurrences_since_ignored: 2 }), true, 'ignore_count'],
    [ignored({ until_occurrences: 3 }, { occurrences_since_ignored: 1 }), false, 'ignored'],
    [ignored({ until: after(30) }), true, 'ignore_until'],
    [ignored({ until: after(90) }), false, 'ignored'],
    [
      ignored({ until_escalating: true }, { rate_before_per_hour: 10, occurrences_last_hour: 20 }),
      true,
      'escalating',
    ],
    [
      ignored({ until_escalating: true }, { rate_before_per_hour: 10, occurrences_last_hour: 19 }),
      false,
      'ignored',
    ],
    [ignored(null), false, 'ignored'],
  ] as const)('%j → %s by %s', (group, regressed, by) => {
    expect(decide(group, event, [])).toMatchObject({ regressed, decided_by: by });
  });
});
