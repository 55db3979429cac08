import { dlqTopic, occurrenceKey, ContractError } from '@shoal/contracts';
import {
  isolatedDatabase,
  isolatedTopics,
  type IsolatedDatabase,
  type IsolatedTopics,
} from '@shoal/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DLQ_HEADER, HEADER, type RunningConsumer } from '../src/index.js';
import { POISON_TITLE } from './counter-service/handler.js';
import {
  codecFor,
  countsOf,
  deletedProjects,
  liveProjects,
  counterDatabase,
  occurrence,
  produceRaw,
  readAll,
  startCounter,
  storedNextOffset,
  unpublished,
  waitFor,
  type Raw,
} from './support.js';

let ns: IsolatedTopics;
let db: IsolatedDatabase;
let skipDb: IsolatedDatabase;
const running: RunningConsumer[] = [];

// one partition, produced before the consumer starts: the whole mix arrives as one batch
const good = Array.from({ length: 10 }, (_, i) =>
  occurrence(i, { projects: 2, seed: 'permanent' }),
);
const stale = { ...occurrence(100, { seed: 'permanent' }), project_id: 99 };
const poison = {
  ...occurrence(101, { seed: 'permanent' }),
  project_id: 1,
  issue_title: POISON_TITLE,
};
const invalid = {
  ...occurrence(102, { seed: 'permanent' }),
  fingerprint: [] as unknown as [string],
};

beforeAll(async () => {
  ns = await isolatedTopics({ partitions: { occurrences: 1 } });
  [db, skipDb] = await Promise.all([
    isolatedDatabase(counterDatabase),
    isolatedDatabase(counterDatabase),
  ]);
  await Promise.all([liveProjects(db.pool, [1, 2]), liveProjects(skipDb.pool, [1, 2])]);
  await Promise.all([deletedProjects(db.pool, [99]), deletedProjects(skipDb.pool, [99])]);
  const codec = codecFor(ns.topics);
  const encoded = await Promise.all(
    good.map(async (o) => ({ key: occurrenceKey(o), value: await codec.encode('occurrences', o) })),
  );
  const mix: Raw[] = [
    ...encoded.slice(0, 5),
    {
      key: 'bad-bytes',
      value: Buffer.from([0xff, 0x00, 0x13, 0x37]),
      headers: { 'x-upstream': 'legacy' },
    },
    {
      key: occurrenceKey({ project_id: 1, fingerprint: ['x'] }),
      value: Buffer.from(JSON.stringify(invalid)),
    },
    {
      key: occurrenceKey(stale),
      value: await codec.encode('occurrences', stale),
      headers: { [HEADER.traceId]: 'trace-stale' },
    },
    { key: occurrenceKey(poison), value: await codec.encode('occurrences', poison) },
    ...encoded.slice(5),
  ];
  await produceRaw(ns.topics.occurrences, mix, 0);
});

afterAll(async () => {
  await Promise.all(running.map((r) => r.stop()));
  await Promise.all([db?.drop(), skipDb?.drop(), ns?.drop()]);
});

describe('permanent failures', () => {
  it('dead-letter each bad message with every header while the good ones around them are applied', async () => {
    const consumer = await startCounter(ns, db.pool, { group: 'counter-dlq', maxBatchSize: 1000 });
    running.push(consumer);
    await waitFor(
      'the batch to commit and its outbox (events and dead letters) to be published',
      async () =>
        (await storedNextOffset(db.pool, 'counter-dlq', ns.topics.occurrences)) === 14 &&
        (await unpublished(db.pool)) === 0,
    );

    // the poison message in the middle of the batch rolled back nothing but itself
    const counts = await countsOf(db.pool);
    expect(Object.values(counts).reduce((a, b) => a + b, 0)).toBe(10);
    const { rows: events } = await db.pool.query(
      'SELECT topic, count(*)::int AS n FROM outbox_events GROUP BY topic ORDER BY topic',
    );
    // the group events, and the dead letters written in the same transactions
    expect(events).toEqual([
      { topic: ns.topics.groupEvents, n: 10 },
      { topic: dlqTopic(ns.topics.occurrences), n: 4 },
    ]);

    const dlq = await readAll(dlqTopic(ns.topics.occurrences));
    expect(dlq).toHaveLength(4);
    const byReason = Object.fromEntries(dlq.map((r) => [r.headers[DLQ_HEADER.reason], r]));
    expect(Object.keys(byReason).sort()).toEqual([
      'decode_error',
      'processing_error',
      'schema_invalid',
      'stale_reference',
    ]);
    for (const record of dlq) {
      const optional: string[] = [DLQ_HEADER.entity, DLQ_HEADER.entityId, DLQ_HEADER.rejection];
      for (const header of Object.values(DLQ_HEADER).filter((h) => !optional.includes(h))) {
        expect(
          record.headers[header],
          `${header} on ${record.headers[DLQ_HEADER.reason]}`,
        ).toBeTruthy();
      }
      expect(record.headers[DLQ_HEADER.originalTopic]).toBe(ns.topics.occurrences);
      expect(record.headers[DLQ_HEADER.consumerGroup]).toBe('counter-dlq');
      expect(record.headers[DLQ_HEADER.attemptCount]).toBe('1');
      expect(record.headers[HEADER.messageId]).toBeTruthy();
    }
    // original key, value bytes and headers, exactly
    expect(byReason.decode_error!.key).toBe('bad-bytes');
    expect(byReason.decode_error!.value).toEqual(Buffer.from([0xff, 0x00, 0x13, 0x37]));
    expect(byReason.decode_error!.headers['x-upstream']).toBe('legacy');
    expect(byReason.decode_error!.headers[DLQ_HEADER.originalOffset]).toBe('5');
    expect(byReason.schema_invalid!.headers[DLQ_HEADER.errorMessage]).toContain('/fingerprint');
    expect(byReason.schema_invalid!.headers[DLQ_HEADER.errorClass]).toBe(ContractError.name);
    expect(byReason.stale_reference!.headers[DLQ_HEADER.entity]).toBe('project');
    expect(byReason.stale_reference!.headers[DLQ_HEADER.entityId]).toBe('99');
    expect(byReason.stale_reference!.headers[DLQ_HEADER.errorMessage]).toMatch(
      /^project 99 was deleted at /,
    );
    expect(byReason.decode_error!.headers[DLQ_HEADER.entityId]).toBeUndefined();
    expect(byReason.stale_reference!.headers[HEADER.traceId]).toBe('trace-stale');
    expect(byReason.stale_reference!.headers[HEADER.messageId]).toBe(`occurrence:${stale.id}`);
    expect(byReason.processing_error!.headers[DLQ_HEADER.errorMessage]).toBe('poison occurrence');
    expect(byReason.processing_error!.headers[DLQ_HEADER.originalOffset]).toBe('8');

    const { rows: failures } = await db.pool.query(
      'SELECT "offset", reason, entity, action FROM message_failures ORDER BY "offset"',
    );
    expect(failures).toEqual([
      { offset: 5, reason: 'decode_error', entity: null, action: 'dlq' },
      { offset: 6, reason: 'schema_invalid', entity: null, action: 'dlq' },
      { offset: 7, reason: 'stale_reference', entity: 'project', action: 'dlq' },
      { offset: 8, reason: 'processing_error', entity: null, action: 'dlq' },
    ]);
  });

  it('skip by policy: counted and recorded, not dead-lettered', async () => {
    const before = (await readAll(dlqTopic(ns.topics.occurrences))).length;
    const consumer = await startCounter(ns, skipDb.pool, {
      group: 'counter-skip',
      maxBatchSize: 1000,
      env: { SHOAL_POLICY_STALE_REFERENCE_PROJECT: 'skip', SHOAL_POLICY_DECODE_ERROR: 'skip' },
    });
    running.push(consumer);
    await waitFor(
      'the batch to commit and its dead letters to be published',
      async () =>
        (await storedNextOffset(skipDb.pool, 'counter-skip', ns.topics.occurrences)) === 14 &&
        (await unpublished(skipDb.pool)) === 0,
    );
    const { rows } = await skipDb.pool.query(
      'SELECT reason, action FROM message_failures ORDER BY "offset"',
    );
    expect(rows).toEqual([
      { reason: 'decode_error', action: 'skip' },
      { reason: 'schema_invalid', action: 'dlq' },
      { reason: 'stale_reference', action: 'skip' },
      { reason: 'processing_error', action: 'dlq' },
    ]);
    const dlq = (await readAll(dlqTopic(ns.topics.occurrences))).filter(
      (r) => r.headers[DLQ_HEADER.consumerGroup] === 'counter-skip',
    );
    expect(dlq.map((r) => r.headers[DLQ_HEADER.reason]).sort()).toEqual([
      'processing_error',
      'schema_invalid',
    ]);
    expect((await readAll(dlqTopic(ns.topics.occurrences))).length).toBe(before + 2);
  });

  it('a replayed dead letter keeps its id: applied once however often it is replayed', async () => {
    await liveProjects(db.pool, [99]);
    const dlq = await readAll(dlqTopic(ns.topics.occurrences));
    const staleLetter = dlq.find(
      (r) =>
        r.headers[DLQ_HEADER.reason] === 'stale_reference' &&
        r.headers[DLQ_HEADER.consumerGroup] === 'counter-dlq',
    )!;
    const replay: Raw = {
      key: staleLetter.key!,
      value: staleLetter.value,
      headers: {
        ...staleLetter.headers,
        'shoal.replay.from-topic': dlqTopic(ns.topics.occurrences),
        'shoal.replay.from-offset': staleLetter.offset,
      },
    };
    // replayed twice, and a good message re-sent by its producer
    await produceRaw(
      ns.topics.occurrences,
      [
        replay,
        replay,
        {
          key: occurrenceKey(good[0]!),
          value: await codecFor(ns.topics).encode('occurrences', good[0]!),
        },
      ],
      0,
    );
    await waitFor(
      'the replays to commit',
      async () => (await storedNextOffset(db.pool, 'counter-dlq', ns.topics.occurrences)) === 17,
    );
    const counts = await countsOf(db.pool);
    expect(counts[`99:${stale.fingerprint[0]}`]).toBe(1);
    expect(Object.values(counts).reduce((a, b) => a + b, 0)).toBe(11);
    const { rows } = await db.pool.query(
      'SELECT count(*)::int AS n FROM processed_messages WHERE message_id = $1',
      [`occurrence:${stale.id}`],
    );
    expect(rows[0].n).toBe(1);
  });
});
