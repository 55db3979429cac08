import { spawnSync } from 'node:child_process';
import { repoRoot } from '@shoal/testing';
import { describe, expect, it } from 'vitest';
import { bin } from './support.js';

/** The bin with `input` on stdin, as a script pipes cases into it. */
const explain = (input: string, args: string[] = []) => {
  const result = spawnSync(bin, ['regression', 'explain', ...args], {
    cwd: repoRoot,
    input,
    encoding: 'utf8',
    timeout: 120_000,
  });
  return {
    status: result.status,
    lines: result.stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>),
    stdout: result.stdout,
  };
};

const resolvedIn = (release: string) => ({
  status: 'resolved',
  resolution: { type: 'in_release', release, resolved_at: '2026-11-01T10:00:00Z' },
});
const releases = [
  { version: 'web@1.2.0', date_added: '2026-10-01T00:00:00Z', extra: 'ignored' },
  { version: 'web@1.10.0', date_added: '2026-09-01T00:00:00Z' },
];
const at = '2026-11-02T00:00:00Z';

describe('shoal regression explain', () => {
  it('decides each JSON line in order, names the field of a malformed case, still decides the rest, and exits 3', () => {
    const cases = [
      { releases, group: resolvedIn('web@1.2.0'), event: { release: 'web@1.10.0', timestamp: at } },
      'not json',
      { releases, group: resolvedIn('web@1.2.0'), event: { release: 'web@1.2.0' } },
      {
        releases,
        group: { status: 'resolved', resolution: { type: 'sometime', resolved_at: at } },
        event: { release: null, timestamp: at },
      },
      { group: resolvedIn('web@1.2.0'), event: { release: null, timestamp: at }, note: 'x' },
    ];
    const input = cases.map((c) => (typeof c === 'string' ? c : JSON.stringify(c))).join('\n');
    const { status, lines } = explain(`${input}\n`);
    expect(status).toBe(3);
    expect(lines).toHaveLength(5);
    expect(lines[0]).toMatchObject({ regressed: true, decided_by: 'semver' });
    expect(lines[0]!.why).toContain('web@1.10.0 is newer than web@1.2.0');
    expect(lines[1]).toMatchObject({ line: 2, error: expect.stringMatching(/^not JSON/) });
    expect(lines[2]).toMatchObject({
      line: 3,
      error: expect.stringMatching(/^event\.timestamp: /),
    });
    expect(lines[3]).toMatchObject({
      line: 4,
      error: expect.stringMatching(/^group\.resolution\.type: /),
    });
    expect(lines[4]).toMatchObject({ regressed: false, decided_by: 'no_release' });
  });

  it('accepts a JSON array, takes --grace-seconds, exits 0 when every case was decided', () => {
    const now = {
      group: {
        status: 'resolved',
        resolution: { type: 'now', resolved_at: '2026-11-01T10:00:00Z' },
      },
      event: { release: null, timestamp: '2026-11-01T10:00:30Z' },
    };
    expect(explain(JSON.stringify([now, now]))).toMatchObject({
      status: 0,
      lines: [
        { regressed: true, decided_by: 'grace' },
        { regressed: true, decided_by: 'grace' },
      ],
    });
    expect(explain(JSON.stringify(now), ['--grace-seconds', '60']).lines).toMatchObject([
      { regressed: false, decided_by: 'grace' },
    ]);
  });

  it('a bad option value is bad usage (2); --help documents the case and the exit codes', () => {
    expect(explain('', ['--grace-seconds', 'soon']).status).toBe(2);
    const help = spawnSync(bin, ['regression', 'explain', '--help'], {
      cwd: repoRoot,
      encoding: 'utf8',
    });
    expect(help.status).toBe(0);
    expect(help.stdout).toContain('"current_release_version"');
    expect(help.stdout).toContain('3    done, but some records were refused');
  });
});
