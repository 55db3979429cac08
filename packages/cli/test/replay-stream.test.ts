import { isolatedDatabase, type IsolatedDatabase } from '@shoal/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ensureLedger } from '../src/dlq/ledger.js';
import { deadLetterTopic, shoalRunners } from './support.js';

// `shoal dlq replay --yes` streams (replay.ts): it reads the dead-letter topic while it produces,
// so it prints each record as its fate becomes final (a replay once its batch is checkpointed) and
// its progress bar starts from the topic's size, coming down to what there is to replay. The
// failure is a trigger refusing the third batch's checkpoint; 200 KB values make batches of four.

let cliDb: IsolatedDatabase;
let target: string;
let dropTopics: () => Promise<void>;
const total = 12;
const { shoal, shoalOnTerminal } = shoalRunners(() => ({ DATABASE_URL: cliDb.url }));

beforeAll(async () => {
  cliDb = await isolatedDatabase({ migrate: false });
  ({ target, drop: dropTopics } = await deadLetterTopic('cli-stream.', total, (n) => ({
    value: Buffer.alloc(200_000, n),
  })));
}, 120_000);

afterAll(async () => {
  await dropTopics?.();
  await cliDb?.drop();
});

const offsetsIn = (output: string, outcome: string) =>
  [...output.matchAll(new RegExp(`dlq offset (\\d+) .*: ${outcome}`, 'gm'))].map((m) =>
    Number(m[1]),
  );

it('prints a record replayed only once its batch is checkpointed: a failed checkpoint leaves the batches before it printed', async () => {
  await ensureLedger(cliDb.pool);
  await cliDb.pool.query(`
    CREATE FUNCTION shoal_cli.refuse() RETURNS trigger LANGUAGE plpgsql AS
      $$ BEGIN RAISE EXCEPTION 'checkpoint refused at dlq offset %', NEW.dlq_offset; END $$;
    CREATE TRIGGER refuse BEFORE INSERT ON shoal_cli.dlq_replayed
      FOR EACH ROW WHEN (NEW.dlq_offset >= 8) EXECUTE FUNCTION shoal_cli.refuse();`);
  const failed = shoal(['dlq', 'replay', '--topic', target, '--yes']);
  await cliDb.pool.query('DROP TRIGGER refuse ON shoal_cli.dlq_replayed');
  expect(failed.status).toBe(1);
  expect(failed.stderr).toContain('checkpoint refused at dlq offset 8');
  expect(offsetsIn(failed.stdout, 'replayed\\r?$')).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  expect(failed.stdout.trim().split('\n')).toHaveLength(8);
}, 60_000);

it('on a terminal: the bar starts from the topic size and ends at what was left to replay; records print in offset order', () => {
  const run = shoalOnTerminal(['dlq', 'replay', '--topic', target, '--yes']);
  expect(run.status).toBe(0);
  expect(run.output).toMatch(new RegExp(`replayed .*0/${total} \\|`));
  expect(run.output).toMatch(/replayed .*4\/4 \| \d+\/s/);
  expect(run.output).toContain('replayed 4 records as run');
  expect(offsetsIn(run.output, 'skipped, replayed by run')).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  expect(offsetsIn(run.output, 'replayed\\r?$')).toEqual([8, 9, 10, 11]);
  expect([...run.output.matchAll(/dlq offset (\d+) /g)].map((m) => Number(m[1]))).toEqual(
    Array.from({ length: total }, (_, i) => i),
  );
}, 60_000);
