import { dlqTopic } from '@shoal/contracts';
import { isolatedDatabase, isolatedTopics, readAll } from '@shoal/testing';
import { afterAll, expect, it, onTestFinished } from 'vitest';
import { ensureLedger } from '../src/dlq/ledger.js';
import { applyReplay, planReplay } from '../src/dlq/replay.js';
import { deadLetterTopic, sendDeadLetters } from './support.js';

// A replay's checkpoints are written behind its produced batches (replay.ts): when one fails, the
// run stops producing, what is recorded is every batch before it, and the next run replays the rest
// (the real stack; the failure is a trigger refusing the third batch's rows).

const ns = await isolatedTopics({ register: false });
const db = await isolatedDatabase({ migrate: false });
afterAll(() => Promise.all([ns.drop(), db.drop()]));

const topic = ns.topics.occurrences;
const connections = {
  databaseUrl: db.url,
  brokers: (process.env.KAFKA_BROKERS ?? '127.0.0.1:9092').split(','),
  registryUrl: '',
};
const total = 40;

it('a failed checkpoint stops the run; recorded batches are a prefix, and a re-run replays the rest', async () => {
  // 200 KB values: four records a batch (900 KiB), ten batches
  await sendDeadLetters(topic, total, (n) => ({ value: Buffer.alloc(200_000, n) }));
  await ensureLedger(db.pool);
  await db.pool.query(`
    CREATE FUNCTION shoal_cli.refuse() RETURNS trigger LANGUAGE plpgsql AS
      $$ BEGIN RAISE EXCEPTION 'checkpoint refused at dlq offset %', NEW.dlq_offset; END $$;
    CREATE TRIGGER refuse BEFORE INSERT ON shoal_cli.dlq_replayed
      FOR EACH ROW WHEN (NEW.dlq_offset >= 8) EXECUTE FUNCTION shoal_cli.refuse();`);

  const request = { topic, dlqTopic: dlqTopic(topic), filters: {}, force: true };
  const options = { actor: 'test', rate: Number.MAX_VALUE, filters: {}, progress: () => {} };
  await expect(
    applyReplay(await planReplay(request, connections), options, connections),
  ).rejects.toThrow('checkpoint refused at dlq offset 8');
  const recorded = async () =>
    (
      await db.pool.query<{ dlq_offset: string }>(
        'SELECT dlq_offset FROM shoal_cli.dlq_replayed ORDER BY dlq_offset',
      )
    ).rows.map((r) => Number(r.dlq_offset));
  expect(await recorded()).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  const runs = async () =>
    (
      await db.pool.query<{ replayed: number; finished: boolean }>(
        'SELECT replayed, finished_at IS NOT NULL AS finished FROM shoal_cli.dlq_replay_runs ORDER BY started_at',
      )
    ).rows;
  expect(await runs()).toEqual([{ replayed: 8, finished: false }]);
  // the refused batch was produced, and the run stopped before the last batches
  const produced = (await readAll(topic)).map((r) => r.key?.toString());
  expect(produced.length).toBeGreaterThanOrEqual(12);
  expect(produced.length).toBeLessThan(total);

  await db.pool.query('DROP TRIGGER refuse ON shoal_cli.dlq_replayed');
  const rest = await planReplay(request, connections);
  expect(rest.steps.filter((s) => s.action === 'skip')).toHaveLength(8);
  expect(await applyReplay(rest, options, connections)).toMatchObject({ replayed: total - 8 });
  expect(await recorded()).toEqual(Array.from({ length: total }, (_, i) => i));
  expect(await runs()).toEqual([
    { replayed: 8, finished: false },
    { replayed: total - 8, finished: true },
  ]);
}, 60_000);

it('sizes a batch by the bytes of every value of a repeated header', async () => {
  // 200 KB a record, all in two values of one header: counted by bytes, four records a batch; counted
  // by values, all twelve would go in one batch and the broker would refuse it (over 1 MiB on the
  // target's one partition)
  const count = 12;
  const { target, drop } = await deadLetterTopic('cli-headers.', count, (n) => ({
    value: `v-${n}`,
    headers: { 'x-trace': [Buffer.alloc(100_000, 'a'), Buffer.alloc(100_000, 'b')] },
  }));
  onTestFinished(drop);
  const request = { topic: target, dlqTopic: dlqTopic(target), filters: {}, force: true };
  const options = { actor: 'test', rate: Number.MAX_VALUE, filters: {}, progress: () => {} };
  expect(
    await applyReplay(await planReplay(request, connections), options, connections),
  ).toMatchObject({ replayed: count });
  const replayed = await readAll(target);
  expect(replayed.map((r) => r.key).sort()).toEqual(
    Array.from({ length: count }, (_, n) => `k-${n}`).sort(),
  );
  expect(replayed.every((r) => r.headers['x-trace']?.length === 200_001)).toBe(true);
}, 60_000);
