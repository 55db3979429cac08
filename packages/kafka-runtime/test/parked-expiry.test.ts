import { dlqTopic, occurrenceKey, type Occurrence } from '@shoal/contracts';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { DLQ_HEADER, HEADER } from '../src/index.js';
import { POISON_TITLE } from './counter-service/handler.js';
import { counterRun, countsOf, occurrence, readAll, waitFor, type CounterRun } from './support.js';

/**
 * A key parked behind the same head past SHOAL_PARKED_DEADLINE_SECONDS (in production the dead-letter
 * topics' retention, after which the head can no longer be replayed): its parked messages are
 * dead-lettered in order as `parked_expired`, never deleted, and the key flows again.
 */

let run: CounterRun;

const onK = (i: number, extra: Partial<Occurrence> = {}): Occurrence => ({
  ...occurrence(i, { seed: 'parked-expiry' }),
  project_id: 1,
  fingerprint: ['fp-expiring'],
  ...extra,
});

beforeAll(async () => {
  run = await counterRun('parked-expiry', {
    SHOAL_ORDERED_TOPICS: 'occurrences',
    SHOAL_PARKED_DEADLINE_SECONDS: '3',
  });
});
afterAll(() => run?.stop());

it('dead-letters the messages of a key parked past the deadline, in order, then lets the key flow', async () => {
  const head = onK(0, { issue_title: POISON_TITLE });
  const behind = Array.from({ length: 5 }, (_, i) => onK(1 + i));
  const other = { ...occurrence(100, { seed: 'parked-expiry-other' }), project_id: 2 };
  await run.produce([head, ...behind, other]);
  await run.settled();
  const { rowCount: parked } = await run.db.pool.query('SELECT 1 FROM parked_messages');
  expect(parked).toBe(5);

  const expiredLetters = async () =>
    (await readAll(dlqTopic(run.ns.topics.occurrences))).filter(
      (r) => r.headers[DLQ_HEADER.reason] === 'parked_expired',
    );
  await waitFor('the parked messages to expire into the DLQ', async () => {
    await run.settled();
    return (await expiredLetters()).length === 5;
  });
  const letters = await expiredLetters();
  expect(letters.map((r) => r.headers[HEADER.messageId])).toEqual(
    behind.map((o) => `occurrence:${o.id}`),
  );
  expect(letters.map((r) => Number(r.headers[DLQ_HEADER.originalOffset]))).toEqual([1, 2, 3, 4, 5]);
  expect(letters[0]!.key).toBe(occurrenceKey(head));
  expect(letters[0]!.headers[DLQ_HEADER.errorMessage]).toMatch(
    new RegExp(
      `^parked behind occurrence:${head.id} \\(processing_error\\) since \\d{4}-.*neither replayed nor discarded$`,
    ),
  );
  expect((await run.db.pool.query('SELECT 1 FROM parked_messages')).rowCount).toBe(0);
  expect((await run.db.pool.query('SELECT 1 FROM parked_keys')).rowCount).toBe(0);
  const { rows: failures } = await run.db.pool.query<{ reason: string; n: number }>(
    'SELECT reason, count(*)::int AS n FROM message_failures GROUP BY reason ORDER BY reason',
  );
  expect(failures).toEqual([
    { reason: 'parked_expired', n: 5 },
    { reason: 'processing_error', n: 1 },
  ]);

  // the key is no longer parked: its next message applies at once
  await run.produce([onK(6)]);
  await run.settled();
  expect((await countsOf(run.db.pool))['1:fp-expiring']).toBe(1);
});
