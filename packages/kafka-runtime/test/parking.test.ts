import { dlqTopic, occurrenceKey, type Occurrence } from '@shoal/contracts';
import { withTransaction } from '@shoal/db';
import { metrics } from '@shoal/observability';
import {
  isolatedDatabase,
  isolatedTopics,
  type IsolatedDatabase,
  type IsolatedTopics,
} from '@shoal/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { discardParkedHead, DLQ_HEADER, HEADER, type RunningConsumer } from '../src/index.js';
import { POISON_TITLE, REJECT_TITLE } from './counter-service/handler.js';
import {
  codecFor,
  counterDatabase,
  countsOf,
  encodeAll,
  deletedProjects,
  liveProjects,
  occurrence,
  produceRaw,
  readAll,
  startCounter,
  storedNextOffset,
  unpublished,
  waitFor,
} from './support.js';

const GROUP = 'parking';
let ns: IsolatedTopics;
let db: IsolatedDatabase;
let consumer: RunningConsumer;
let produced = 0;

// key P: its head names project 7, deleted (stale_reference); the fix is to restore it
const onP = (i: number, extra: Partial<Occurrence> = {}): Occurrence => ({
  ...occurrence(i, { seed: 'parking-p' }),
  project_id: 7,
  fingerprint: ['fp-parked'],
  ...extra,
});
// other keys, on projects that exist
const other = (i: number): Occurrence => occurrence(i, { projects: 2, seed: 'parking-other' });
const head = onP(0);
const behind = Array.from({ length: 50 }, (_, i) => onP(1 + i));
const lateArrival = onP(51);

const produce = async (values: Occurrence[]) => {
  await produceRaw(ns.topics.occurrences, await encodeAll(codecFor(ns.topics), values), 0);
  produced += values.length;
};
const settled = () =>
  waitFor(
    'every produced message to commit and the outbox to be published',
    async () =>
      (await storedNextOffset(db.pool, GROUP, ns.topics.occurrences)) === produced &&
      (await unpublished(db.pool)) === 0,
    90_000,
  );
const parkedOf = async (key: string) => {
  const { rows } = await db.pool.query<{ message_id: string; offset: number }>(
    `SELECT message_id, "offset"::int FROM parked_messages WHERE message_key = $1 ORDER BY seq`,
    [key],
  );
  return rows;
};
const headOf = async (key: string) =>
  (
    await db.pool.query<{ head_message_id: string | null }>(
      'SELECT head_message_id FROM parked_keys WHERE message_key = $1',
      [key],
    )
  ).rows[0]?.head_message_id;
/** The occurrence ids of the group events emitted for `projectId`, in the order they were applied. */
const appliedOrder = async (projectId: number) =>
  (
    await db.pool.query<{ id: string }>(
      `SELECT payload->>'occurrence_id' AS id FROM outbox_events
       WHERE topic = $1 AND (payload->>'project_id')::int = $2 ORDER BY seq, ordinal`,
      [ns.topics.groupEvents, projectId],
    )
  ).rows.map((r) => r.id);
const gauge = async (g: typeof metrics.parkedKeys) =>
  (await g.get()).values.find(
    (v) => v.labels.group === GROUP && v.labels.topic === ns.topics.occurrences,
  )?.value;

beforeAll(async () => {
  ns = await isolatedTopics({ partitions: { occurrences: 1 } });
  db = await isolatedDatabase(counterDatabase);
  await liveProjects(db.pool, [1, 2]);
  await deletedProjects(db.pool, [7, 11]); // restored when their heads are to be replayed
  consumer = await startCounter(ns, db.pool, {
    group: GROUP,
    haltCheckMs: 1000, // also how often released keys of idle partitions are drained
    env: {
      SHOAL_ORDERED_TOPICS: 'occurrences',
      // parked messages never count: 50 of them in a row would cross this
      SHOAL_DLQ_MAX_CONSECUTIVE: '3',
    },
  });
});

afterAll(async () => {
  await consumer?.stop();
  await Promise.all([db?.drop(), ns?.drop()]);
});

describe('order survives failure, per key (ordered topic)', () => {
  it("parks a dead-lettered message's key, its later messages even in the same chunk, while other keys flow", async () => {
    // one batch: the head, 30 of its key's later messages, other keys between them
    await produce([
      other(0),
      head,
      ...behind.slice(0, 30).flatMap((v, i) => (i % 10 === 9 ? [v, other(1 + i)] : [v])),
    ]);
    await settled();
    // a later batch: 20 more behind the head, and other keys
    await produce([
      ...behind.slice(30).flatMap((v, i) => (i % 5 === 0 ? [other(100 + i), v] : [v])),
    ]);
    await settled();

    const key = occurrenceKey(head);
    expect(await headOf(key)).toBe(`occurrence:${head.id}`);
    expect((await parkedOf(key)).map((r) => r.message_id)).toEqual(
      behind.map((v) => `occurrence:${v.id}`),
    );
    const counts = await countsOf(db.pool);
    expect(counts[`7:fp-parked`]).toBeUndefined();
    // every other key applied meanwhile: 1 + 3 + 4 of them
    expect(Object.values(counts).reduce((a, b) => a + b, 0)).toBe(8);
    // only the head is a failure and a dead letter; parked messages are neither
    const { rows: failures } = await db.pool.query(
      'SELECT message_id, reason FROM message_failures',
    );
    expect(failures).toEqual([{ message_id: `occurrence:${head.id}`, reason: 'stale_reference' }]);
    expect(await gauge(metrics.parkedKeys)).toBe(1);
    expect(await gauge(metrics.parkedMessages)).toBe(50);
  });

  it('applies the 50 parked messages in order once the head is replayed, and a new arrival after them', async () => {
    await liveProjects(db.pool, [7]);
    const letter = (await readAll(dlqTopic(ns.topics.occurrences))).find(
      (r) => r.headers[HEADER.messageId] === `occurrence:${head.id}`,
    )!;
    expect(letter.headers[DLQ_HEADER.reason]).toBe('stale_reference');
    // as a replay does: same key, value and headers, plus its provenance
    await produceRaw(
      ns.topics.occurrences,
      [
        {
          key: letter.key!,
          value: letter.value,
          headers: {
            ...letter.headers,
            'shoal.replay.from-topic': dlqTopic(ns.topics.occurrences),
            'shoal.replay.from-offset': letter.offset,
          },
        },
      ],
      0,
    );
    produced += 1;
    await produce([lateArrival, other(200)]);
    await settled();

    const key = occurrenceKey(head);
    expect(await headOf(key)).toBeUndefined();
    expect(await parkedOf(key)).toEqual([]);
    const want = [head, ...behind, lateArrival].map((v) => v.id);
    expect(await appliedOrder(7)).toEqual(want);
    expect((await countsOf(db.pool))[`7:fp-parked`]).toBe(52);
    expect(await gauge(metrics.parkedKeys)).toBe(0);
    expect(await gauge(metrics.parkedMessages)).toBe(0);
  });

  it('a discarded head releases its key: its parked messages apply in order, with no new message to carry them', async () => {
    // key Q on project 1: a poison head (processing_error), then five good messages
    const onQ = (i: number, extra: Partial<Occurrence> = {}): Occurrence => ({
      ...occurrence(i, { seed: 'parking-q' }),
      project_id: 1,
      fingerprint: ['fp-discarded'],
      ...extra,
    });
    const poison = onQ(0, { issue_title: POISON_TITLE });
    const queued = Array.from({ length: 5 }, (_, i) => onQ(1 + i));
    await produce([poison, ...queued]);
    await settled();
    const key = occurrenceKey(poison);
    expect(await headOf(key)).toBe(`occurrence:${poison.id}`);
    expect(await parkedOf(key)).toHaveLength(5);

    const discarded = await withTransaction(db.pool, (tx) =>
      discardParkedHead(tx, { group: GROUP, topic: ns.topics.occurrences, key }),
    );
    expect(discarded).toEqual({ headMessageId: `occurrence:${poison.id}`, parkedMessages: 5 });
    // nothing more arrives on the partition: the consumer drains the key on its own
    await waitFor('the released key to drain', async () => (await headOf(key)) === undefined);
    expect(await parkedOf(key)).toEqual([]);
    await settled();
    // and the key flows again
    const after = onQ(6);
    await produce([after]);
    await settled();
    const order = (
      await db.pool.query<{ id: string }>(
        `SELECT payload->>'occurrence_id' AS id FROM outbox_events WHERE topic = $1
         AND payload->>'occurrence_id' = ANY($2) ORDER BY seq, ordinal`,
        [ns.topics.groupEvents, [...queued, after].map((v) => v.id)],
      )
    ).rows.map((r) => r.id);
    expect(order).toEqual([...queued, after].map((v) => v.id));
  });

  it('a failure among the drained messages becomes the new head; the rest stay parked behind it', async () => {
    const onW = (i: number, extra: Partial<Occurrence> = {}): Occurrence => ({
      ...occurrence(i, { seed: 'parking-w' }),
      project_id: 11, // created before the replay
      fingerprint: ['fp-new-head'],
      ...extra,
    });
    const [wHead, first, poison, last] = [
      onW(0),
      onW(1),
      onW(2, { issue_title: POISON_TITLE }),
      onW(3),
    ];
    await produce([wHead, first, poison, last]);
    await settled();
    const key = occurrenceKey(wHead);
    expect(await parkedOf(key)).toHaveLength(3);

    await liveProjects(db.pool, [11]);
    const letter = (await readAll(dlqTopic(ns.topics.occurrences))).find(
      (r) => r.headers[HEADER.messageId] === `occurrence:${wHead.id}`,
    )!;
    await produceRaw(
      ns.topics.occurrences,
      [{ key: letter.key!, value: letter.value, headers: letter.headers }],
      0,
    );
    produced += 1;
    await settled();
    expect(await headOf(key)).toBe(`occurrence:${poison.id}`);
    expect((await parkedOf(key)).map((r) => r.message_id)).toEqual([`occurrence:${last.id}`]);
    expect(await appliedOrder(11)).toEqual([wHead.id, first.id]);
    const { rows } = await db.pool.query(
      'SELECT reason FROM message_failures WHERE message_id = $1',
      [`occurrence:${poison.id}`],
    );
    expect(rows).toEqual([{ reason: 'processing_error' }]);
  });

  it('a rejection never parks its key', async () => {
    const onR = (i: number, extra: Partial<Occurrence> = {}): Occurrence => ({
      ...occurrence(i, { seed: 'parking-r' }),
      project_id: 2,
      fingerprint: ['fp-rejected'],
      ...extra,
    });
    await produce([onR(0, { issue_title: REJECT_TITLE }), onR(1), onR(2)]);
    await settled();
    expect(await headOf(occurrenceKey(onR(0)))).toBeUndefined();
    expect((await countsOf(db.pool))['2:fp-rejected']).toBe(2);
  });
});

describe('keys PostgreSQL text cannot hold as they are', () => {
  it('a key with NUL bytes parks like any other (stored escaped, as Shoal stores text)', async () => {
    const key = 'bytes\u0000of a legacy producer';
    await produceRaw(
      ns.topics.occurrences,
      [
        { key, value: Buffer.from([0xff, 0x00, 0x01]) },
        ...(await encodeAll(codecFor(ns.topics), [other(300)])).map((r) => ({ ...r, key })),
      ],
      0,
    );
    produced += 2;
    await settled();
    const escaped = 'bytes\\u0000of a legacy producer';
    // an undecodable head's id is its coordinates
    expect(await headOf(escaped)).toBe(`${ns.topics.occurrences}:0:${produced - 2}`);
    expect(await parkedOf(escaped)).toHaveLength(1);
  });
});

describe('the parked-message ceiling', () => {
  let ceilingNs: IsolatedTopics;
  let ceilingDb: IsolatedDatabase;
  beforeAll(async () => {
    ceilingNs = await isolatedTopics({ partitions: { occurrences: 1 } });
    ceilingDb = await isolatedDatabase(counterDatabase);
    await liveProjects(ceilingDb.pool, [1]);
    await deletedProjects(ceilingDb.pool, [9]);
  });
  afterAll(async () => Promise.all([ceilingDb?.drop(), ceilingNs?.drop()]));

  it('stops the consumer loudly instead of parking past SHOAL_MAX_PARKED_MESSAGES', async () => {
    const onS = (i: number): Occurrence => ({
      ...occurrence(i, { seed: 'parking-s' }),
      project_id: 9, // deleted for good: the head and everything behind it
      fingerprint: ['fp-ceiling'],
    });
    await produceRaw(
      ceilingNs.topics.occurrences,
      await encodeAll(
        codecFor(ceilingNs.topics),
        Array.from({ length: 11 }, (_, i) => onS(i)),
      ),
      0,
    );
    const stopped = await startCounter(ceilingNs, ceilingDb.pool, {
      group: 'parking-ceiling',
      env: { SHOAL_ORDERED_TOPICS: 'occurrences', SHOAL_MAX_PARKED_MESSAGES: '5' },
    });
    await expect(stopped.done).rejects.toMatchObject({
      name: 'DlqLimitExceeded',
      limit: 'max_parked_messages',
    });
    // the crossing chunk did not commit: nothing parked, nothing dead-lettered, offset not stored
    const { rows } = await ceilingDb.pool.query(
      `SELECT (SELECT count(*)::int FROM parked_messages) AS parked,
              (SELECT count(*)::int FROM message_failures) AS failures`,
    );
    expect(rows[0]).toEqual({ parked: 0, failures: 0 });
    expect(
      await storedNextOffset(ceilingDb.pool, 'parking-ceiling', ceilingNs.topics.occurrences),
    ).toBeLessThanOrEqual(0);
  });
});
