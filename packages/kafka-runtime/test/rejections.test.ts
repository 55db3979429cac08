import { dlqTopic, occurrenceKey } from '@shoal/contracts';
import { metrics } from '@shoal/observability';
import {
  isolatedDatabase,
  isolatedTopics,
  type IsolatedDatabase,
  type IsolatedTopics,
} from '@shoal/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DLQ_HEADER, HEADER, type RunningConsumer } from '../src/index.js';
import { REJECT_TITLE } from './counter-service/handler.js';
import {
  codecFor,
  counterDatabase,
  encodeAll,
  liveProjects,
  occurrence,
  produceRaw,
  readAll,
  startCounter,
  storedNextOffset,
  totalCount,
  unpublished,
  waitFor,
} from './support.js';

let ns: IsolatedTopics;
let recordDb: IsolatedDatabase;
let dlqDb: IsolatedDatabase;
const running: RunningConsumer[] = [];

// 15 messages on one partition: every third is refused by the domain
const values = Array.from({ length: 15 }, (_, i) => ({
  ...occurrence(i, { projects: 2, seed: 'rejections' }),
  ...(i % 3 === 2 ? { issue_title: REJECT_TITLE } : {}),
}));
const refused = values.filter((v) => v.issue_title === REJECT_TITLE);

const rejectedCount = async (group: string, topic: string) =>
  (await metrics.rejected.get()).values.find(
    (v) => v.labels.group === group && v.labels.topic === topic,
  )?.value ?? 0;

beforeAll(async () => {
  ns = await isolatedTopics({ partitions: { occurrences: 1 } });
  [recordDb, dlqDb] = await Promise.all([
    isolatedDatabase(counterDatabase),
    isolatedDatabase(counterDatabase),
  ]);
  await Promise.all([liveProjects(recordDb.pool, [1, 2]), liveProjects(dlqDb.pool, [1, 2])]);
  await produceRaw(ns.topics.occurrences, await encodeAll(codecFor(ns.topics), values), 0);
});

afterAll(async () => {
  await Promise.all(running.map((r) => r.stop()));
  await Promise.all([recordDb?.drop(), dlqDb?.drop(), ns?.drop()]);
});

describe('rejections (ctx.reject)', () => {
  it('are recorded in the batch transaction, kept in the ledger and not dead-lettered by default', async () => {
    const consumer = await startCounter(ns, recordDb.pool, { group: 'rej-record' });
    running.push(consumer);
    await waitFor(
      'the messages to commit and the outbox to be published',
      async () =>
        (await storedNextOffset(recordDb.pool, 'rej-record', ns.topics.occurrences)) === 15 &&
        (await unpublished(recordDb.pool)) === 0,
    );
    expect(await totalCount(recordDb.pool)).toBe(10);
    const { rows } = await recordDb.pool.query(
      `SELECT consumer_group, topic, partition, "offset", message_id, reason, detail, action
       FROM message_rejections ORDER BY "offset"`,
    );
    expect(rows).toEqual(
      refused.map((v, i) => ({
        consumer_group: 'rej-record',
        topic: ns.topics.occurrences,
        partition: 0,
        offset: 3 * i + 2,
        message_id: `occurrence:${v.id}`,
        reason: 'not_allowed',
        detail: `occurrence ${v.id} is not allowed`,
        action: 'record',
      })),
    );
    // not a failure: nothing in message_failures, nothing in the DLQ
    const { rows: failures } = await recordDb.pool.query('SELECT * FROM message_failures');
    expect(failures).toEqual([]);
    const { rows: events } = await recordDb.pool.query(
      'SELECT count(*)::int AS n FROM outbox_events WHERE topic = $1',
      [dlqTopic(ns.topics.occurrences)],
    );
    expect(events[0].n).toBe(0);
    // applied: its id stays in the ledger
    const { rows: ledger } = await recordDb.pool.query(
      'SELECT count(*)::int AS n FROM processed_messages WHERE message_id = ANY($1)',
      [refused.map((v) => `occurrence:${v.id}`)],
    );
    expect(ledger[0].n).toBe(refused.length);
    expect(await rejectedCount('rej-record', ns.topics.occurrences)).toBe(refused.length);

    // a re-send of a refused command is a duplicate, not judged again
    await produceRaw(ns.topics.occurrences, await encodeAll(codecFor(ns.topics), [refused[0]!]), 0);
    await waitFor(
      'the re-send to commit',
      async () =>
        (await storedNextOffset(recordDb.pool, 'rej-record', ns.topics.occurrences)) === 16,
    );
    const { rows: after } = await recordDb.pool.query(
      'SELECT count(*)::int AS n FROM message_rejections',
    );
    expect(after[0].n).toBe(refused.length);
    expect(await rejectedCount('rej-record', ns.topics.occurrences)).toBe(refused.length);
  });

  it('are copied to the DLQ, reason `rejected`, when their policy says dlq', async () => {
    const consumer = await startCounter(ns, dlqDb.pool, {
      group: 'rej-dlq',
      env: { SHOAL_POLICY_REJECTED_NOT_ALLOWED: 'dlq' },
    });
    running.push(consumer);
    await waitFor(
      'the messages to commit and the outbox to be published',
      async () =>
        (await storedNextOffset(dlqDb.pool, 'rej-dlq', ns.topics.occurrences)) >= 15 &&
        (await unpublished(dlqDb.pool)) === 0,
    );
    const { rows } = await dlqDb.pool.query(
      'SELECT reason, action FROM message_rejections ORDER BY "offset"',
    );
    expect(rows).toEqual(refused.map(() => ({ reason: 'not_allowed', action: 'dlq' })));
    const copies = (await readAll(dlqTopic(ns.topics.occurrences))).filter(
      (r) => r.headers[DLQ_HEADER.consumerGroup] === 'rej-dlq',
    );
    expect(copies.map((r) => r.headers[HEADER.messageId])).toEqual(
      refused.map((v) => `occurrence:${v.id}`),
    );
    for (const [i, copy] of copies.entries()) {
      expect(copy.key).toBe(occurrenceKey(refused[i]!));
      expect(copy.headers[DLQ_HEADER.reason]).toBe('rejected');
      expect(copy.headers[DLQ_HEADER.rejection]).toBe('not_allowed');
      expect(copy.headers[DLQ_HEADER.errorClass]).toBe('Rejected');
      expect(copy.headers[DLQ_HEADER.errorMessage]).toBe(
        `occurrence ${refused[i]!.id} is not allowed`,
      );
      expect(copy.headers[DLQ_HEADER.originalOffset]).toBe(String(3 * i + 2));
    }
    const { rows: failures } = await dlqDb.pool.query('SELECT * FROM message_failures');
    expect(failures).toEqual([]);
  });
});

describe('a stream of nothing but rejections', () => {
  let wallNs: IsolatedTopics;
  let db: IsolatedDatabase;
  beforeAll(async () => {
    wallNs = await isolatedTopics({ partitions: { occurrences: 1 } });
    db = await isolatedDatabase(counterDatabase);
    await liveProjects(db.pool, [1, 2, 3]);
  });
  afterAll(async () => Promise.all([db?.drop(), wallNs?.drop()]));

  it('does not touch the dead-letter limits, however strict', async () => {
    const wall = Array.from({ length: 300 }, (_, i) => ({
      ...occurrence(i, { seed: 'rejection-wall' }),
      issue_title: REJECT_TITLE,
    }));
    await produceRaw(wallNs.topics.occurrences, await encodeAll(codecFor(wallNs.topics), wall), 0);
    const consumer = await startCounter(wallNs, db.pool, {
      group: 'rej-wall',
      maxBatchSize: 50,
      env: {
        SHOAL_DLQ_MAX_CONSECUTIVE: '1',
        SHOAL_DLQ_MAX_INVALID_RATIO: '0',
        SHOAL_DLQ_RATIO_MIN_MESSAGES: '1',
        SHOAL_POLICY_REJECTED_NOT_ALLOWED: 'dlq',
      },
    });
    running.push(consumer);
    let stopped: unknown;
    consumer.done.catch((error: unknown) => (stopped = error));
    await waitFor(
      'all 300 rejections to commit',
      async () => {
        if (stopped) throw stopped;
        return (await storedNextOffset(db.pool, 'rej-wall', wallNs.topics.occurrences)) === 300;
      },
      60_000,
    );
    const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM message_rejections');
    expect(rows[0].n).toBe(300);
    expect(stopped).toBeUndefined();
  });
});
