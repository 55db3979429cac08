import { isolatedDatabase, type IsolatedDatabase } from '@shoal/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deadLetterTopic, shoalRunners } from './support.js';

// What `shoal dlq replay` shows while it works (shared/CLI.md): a progress bar with done/total,
// rate and ETA on a terminal that allows it, a plain line every 10 s anywhere else; and no
// password of DATABASE_URL in anything it prints. The dead letters are written straight to a
// dead-letter topic (no consumer reads their target).

let cliDb: IsolatedDatabase;
let target: string;
let dropTopics: () => Promise<void>;
const { shoal, shoalOnTerminal } = shoalRunners(() => ({ DATABASE_URL: cliDb.url }));

const BAR = '█';
const ANSI = '\u001b[';

beforeAll(async () => {
  cliDb = await isolatedDatabase({ migrate: false });
  ({ target, drop: dropTopics } = await deadLetterTopic('cli-progress.', 40, (n) => ({
    value: `v-${n}`,
  })));
}, 120_000);

afterAll(async () => {
  await dropTopics?.();
  await cliDb?.drop();
});

const replayArgs = (limit: number, rate: number) => [
  'dlq',
  'replay',
  '--topic',
  target,
  '--yes',
  '--limit',
  String(limit),
  '--rate',
  String(rate),
];

describe('shoal dlq replay progress', () => {
  it('on a terminal: a bar with done/total, rate and ETA on stderr', () => {
    const run = shoalOnTerminal(replayArgs(10, 5));
    expect(run.status).toBe(0);
    expect(run.output).toContain(BAR);
    expect(run.output).toMatch(/replayed .*10\/10 \| \d+\/s \| ETA \d+s/);
  }, 60_000);

  it('never a bar or colour with NO_COLOR, TERM=dumb or --no-color, even on a terminal', () => {
    for (const [args, env] of [
      [replayArgs(5, 50), { NO_COLOR: '1' }],
      [replayArgs(5, 50), { TERM: 'dumb' }],
      [['--no-color', ...replayArgs(5, 50)], {}],
    ] as const) {
      const run = shoalOnTerminal([...args], '', env);
      expect({ env, status: run.status }).toEqual({ env, status: 0 });
      expect(run.output).toContain('replayed 5 records as run');
      expect(run.output).not.toContain(BAR);
      expect(run.output).not.toContain(ANSI);
    }
  }, 120_000);

  it('without a terminal: a plain line every 10 s', () => {
    const run = shoal(replayArgs(12, 1));
    expect(run.status).toBe(0);
    expect(run.stderr).not.toContain(BAR);
    const lines = run.stderr.split('\n').filter((l) => l.startsWith('replayed: '));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^replayed: (9|10|11) of 12 \(1\/s, ETA [1-3] s\)$/);
  }, 60_000);
});

describe('secrets', () => {
  it('a bad DATABASE_URL is named (exit 78) without its password, even when it is no URL', () => {
    for (const url of [
      'postgres//shoal:s3cret-pw@127.0.0.1/shoal',
      'mysql://shoal:s3cret-pw@db/x',
    ]) {
      const run = shoal(['dlq', 'replay', '--topic', target, '--dry-run'], { DATABASE_URL: url });
      expect(run.status).toBe(78);
      expect(run.stderr).toContain('DATABASE_URL: expected a postgres or postgresql URL');
      expect(run.stderr).toContain('shoal:***@');
      expect(run.stdout + run.stderr).not.toContain('s3cret-pw');
    }
  }, 60_000);
});
