import { spawnSync } from 'node:child_process';
import { repoRoot } from '@shoal/testing';
import { describe, expect, it } from 'vitest';
import { bin } from './support.js';

// `shoal dedup explain` as a script runs it: a process, no database or broker in its environment.

function explainRun(args: string[], input = '') {
  const result = spawnSync(bin, ['dedup', 'explain', ...args], {
    cwd: repoRoot,
    env: {
      ...process.env,
      DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none',
      KAFKA_BROKERS: '127.0.0.1:1',
    },
    input,
    encoding: 'utf8',
    timeout: 60_000,
  });
  const lines = result.stdout
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  return { status: result.status, lines, stderr: result.stderr };
}

describe('shoal dedup explain', () => {
  it('explains a message given as an argument', () => {
    const { status, lines } = explainRun(['Order 1234 not found for bob@example.com']);
    expect(status).toBe(0);
    expect(lines).toEqual([
      {
        normalised: 'Order <int> not found for <email>',
        key: expect.stringMatching(/^[0-9a-f]{32}$/) as unknown,
        parts: {
          message: 'Order <int> not found for <email>',
          stack_frames: [],
          component: '',
          route: '',
        },
      },
    ]);
  });

  it('answers each JSON line in order; a bad line gets an error naming the field, exit 3', () => {
    const input = [
      JSON.stringify({
        message: 'timeout after 30ms',
        route: '/api/users/7',
        stack_frames: ['get app/u.ts:9'],
      }),
      '{"message": 42}',
      'not json',
      '',
      JSON.stringify({
        message: 'timeout after 1500ms',
        route: '/api/users/12',
        stack_frames: ['get app/u.ts:11'],
      }),
      JSON.stringify({ message: 'x', stack_frames: 'get' }),
      JSON.stringify({ message: 'x', title: 'y' }),
      '["a JSON array, not a case"]',
    ].join('\n');
    const { status, lines } = explainRun([], input);
    expect(status).toBe(3);
    expect(lines.map((l) => l.field ?? 'ok')).toEqual([
      'ok',
      'message',
      '(line)',
      'ok',
      'stack_frames',
      'title',
      '(line)',
    ]);
    expect(lines[1]).toMatchObject({ line: 2, error: 'message: expected a string' });
    expect(lines[2]).toMatchObject({ line: 3 });
    expect(lines[0]!.parts).toEqual({
      message: 'timeout after <duration>',
      stack_frames: ['get app/u.ts'],
      component: '',
      route: '/api/users/<int>',
    });
    // two reports of one incident: same key
    expect(lines[3]!.key).toBe(lines[0]!.key);
  });

  it('keys only the parts --parts names', () => {
    const one = explainRun(['--parts', 'route', 'a'], '').lines[0]!;
    expect(one.key).toBeNull();
  });

  it('refuses an unknown part as bad usage (exit 2), naming it', () => {
    const { status, stderr } = explainRun(['--parts', 'message,title', 'x']);
    expect(status).toBe(2);
    expect(stderr).toContain('unknown dedup key part "title"');
  });
});
