import { dlqTopic, occurrenceKey } from '@shoal/contracts';
import { withTransaction } from '@shoal/db';
import { createLogger, metricsRegistry } from '@shoal/observability';
import {
  isolatedDatabase,
  isolatedTopics,
  type IsolatedDatabase,
  type IsolatedTopics,
} from '@shoal/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DLQ_HEADER, type RunningConsumer } from '../src/index.js';
import { prune, startPruning } from '../src/retention.js';
import {
  claimMessageIds,
  recordFailures,
  releaseMessageIds,
  type FailureRow,
} from '../src/store.js';
import {
  codecFor,
  counterDatabase,
  countsOf,
  deletedProjects,
  liveProjects,
  occurrence,
  produceRaw,
  readAll,
  startCounter,
  storedNextOffset,
  unpublished,
  waitFor,
  type Raw,
} from './support.js';

const HOUR_MS = 3_600_000;
const dbs: IsolatedDatabase[] = [];
afterAll(() => Promise.all(dbs.map((db) => db.drop())));

async function database(): Promise<IsolatedDatabase> {
  const db = await isolatedDatabase(counterDatabase);
  dbs.push(db);
  return db;
}

const failure = (
  messageId: string,
  offset: number,
  action: 'dlq' | 'skip' = 'dlq',
): FailureRow => ({
  topic: 't',
  partition: 0,
  offset,
  key: null,
  messageId,
  reason: 'stale_reference',
  entity: 'project',
  action,
  errorClass: 'StaleReferenceError',
  errorMessage: 'project 9 does not exist',
});

const ledger = async (db: IsolatedDatabase) =>
  Object.fromEntries(
    (
      await db.pool.query<{ message_id: string; kind: string }>(
        'SELECT message_id, kind FROM processed_messages ORDER BY message_id',
      )
    ).rows.map((r) => [r.message_id, r.kind]),
  );

/** Moves every row of `table` `hours` into the past, as if that time had gone by. */
const age = (db: IsolatedDatabase, table: string, column: string, hours: number) =>
  db.pool.query(`UPDATE ${table} SET ${column} = ${column} - make_interval(hours => $1)`, [hours]);

describe('the ledger keeps what each id is kept for', () => {
  it('a dead-lettered id is claimed once by its replay; a released replay is dead-lettered again', async () => {
    const db = await database();
    await withTransaction(db.pool, async (tx) => {
      expect(await claimMessageIds(tx, 'g', ['a', 'b'])).toEqual(new Set(['a', 'b']));
      await releaseMessageIds(tx, 'g', ['b']); // stale: not applied
      await recordFailures(tx, 'g', [failure('b', 1), failure('c', 2), failure('s', 3, 'skip')]);
    });
    expect(await ledger(db)).toEqual({ a: 'applied', b: 'dead_lettered', c: 'dead_lettered' });

    await withTransaction(db.pool, async (tx) => {
      // a and the replay of c again in the same claim: a is a duplicate, c and the new d are not
      expect(await claimMessageIds(tx, 'g', ['a', 'c', 'd'])).toEqual(new Set(['c', 'd']));
      // the replay of b fails again (its entity still missing): b stays dead-lettered
      expect(await claimMessageIds(tx, 'g', ['b'])).toEqual(new Set(['b']));
      await releaseMessageIds(tx, 'g', ['b']);
      await recordFailures(tx, 'g', [failure('b', 4)]);
    });
    expect(await ledger(db)).toEqual({
      a: 'applied',
      b: 'dead_lettered',
      c: 'replayed',
      d: 'applied',
    });
    // a second replay of c is a duplicate; a failed copy of the applied a keeps a as long as its dead letter
    await withTransaction(db.pool, async (tx) => {
      expect(await claimMessageIds(tx, 'g', ['c'])).toEqual(new Set());
      await recordFailures(tx, 'g', [failure('a', 5)]);
    });
    expect((await ledger(db)).a).toBe('replayed');
  });

  it('prunes applied ids past the re-send window and keeps dead-lettered and replayed ids, and the failures, as long as the dead letters', async () => {
    const db = await database();
    await withTransaction(db.pool, async (tx) => {
      await claimMessageIds(tx, 'g', ['applied', 'replayed']);
      await recordFailures(tx, 'g', [failure('replayed', 1), failure('dead', 2)]);
    });
    await db.pool.query(`
      INSERT INTO offset_resets (consumer_group, topic, partition, to_offset, actor, reason, reset_at)
      VALUES ('g', 't', 0, 0, 'op', 'audit', now() - interval '400 days')`);
    await db.pool.query(`
      INSERT INTO message_rejections (consumer_group, topic, partition, "offset", message_id, reason, detail, action)
      VALUES ('g', 't', 0, 9, 'refused', 'not_allowed', 'no', 'record')`);
    await age(db, 'processed_messages', 'processed_at', 3);
    await age(db, 'message_failures', 'failed_at', 3);
    await age(db, 'message_rejections', 'rejected_at', 3);

    // three hours on, with a two-hour window: only the applied id goes
    expect(await prune(db.pool, 2 * HOUR_MS)).toEqual({
      ledgerApplied: 1,
      ledgerDeadLettered: 0,
      outbox: 0,
      outboxFailures: 0,
      messageFailures: 0,
      messageRejections: 0,
    });
    expect(await ledger(db)).toEqual({ dead: 'dead_lettered', replayed: 'replayed' });

    // 14 days and an hour on: the dead letters are gone from their topic, and so is their trace here
    await age(db, 'processed_messages', 'processed_at', 14 * 24 - 2);
    await age(db, 'message_failures', 'failed_at', 14 * 24 - 2);
    await age(db, 'message_rejections', 'rejected_at', 14 * 24 - 2);
    expect(await prune(db.pool, 2 * HOUR_MS)).toMatchObject({
      ledgerDeadLettered: 2,
      messageFailures: 2,
      messageRejections: 1,
    });
    expect(await ledger(db)).toEqual({});
    // the operators' audit is kept for good
    const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM offset_resets');
    expect(rows[0].n).toBe(1);
  });

  it('deletes in batches until none older than the run began is left', async () => {
    const db = await database();
    await db.pool.query(`
      INSERT INTO processed_messages (consumer_group, message_id, processed_at)
        SELECT 'g', 'old-' || n, now() - interval '2 hours' FROM generate_series(1, 25) n;
      INSERT INTO processed_messages (consumer_group, message_id) VALUES ('g', 'new');`);
    expect(await prune(db.pool, HOUR_MS, { size: 4 })).toMatchObject({ ledgerApplied: 25 });
    expect(await ledger(db)).toEqual({ new: 'applied' });

    const stopped = new AbortController();
    stopped.abort();
    await db.pool.query(`
      INSERT INTO processed_messages (consumer_group, message_id, processed_at)
        SELECT 'g', 'later-' || n, now() - interval '2 hours' FROM generate_series(1, 5) n`);
    // a run told to stop deletes nothing more
    expect(await prune(db.pool, HOUR_MS, { size: 4, signal: stopped.signal })).toMatchObject({
      ledgerApplied: 0,
    });
  });
});

describe('the pruner', () => {
  it('classifies and counts a failed run, and tries again on the next', async () => {
    // no runtime tables: every run fails with SQLSTATE 42P01, a permanent error
    const db = await isolatedDatabase({ migrate: false });
    dbs.push(db);
    const failures = async () =>
      (await metricsRegistry.getSingleMetric('shoal_prune_failed_total')!.get()).values.find(
        (v) => v.labels.group === 'prune-fails' && v.labels.kind === 'permanent',
      )?.value ?? 0;
    const pruning = startPruning({
      pool: db.pool,
      group: 'prune-fails',
      logger: createLogger('retention-test', 'silent'),
      resendWindowMs: HOUR_MS,
      everyMs: 100,
    });
    try {
      await waitFor('two failed runs counted', async () => (await failures()) >= 2);
    } finally {
      await pruning.stop();
    }
  });
});

describe('a replay after the re-send window', () => {
  let ns: IsolatedTopics;
  const running: RunningConsumer[] = [];
  beforeAll(async () => {
    ns = await isolatedTopics({ partitions: { occurrences: 1 } });
  });
  afterAll(async () => {
    await Promise.all(running.map((r) => r.stop()));
    await ns?.drop();
  });

  it('still applies once, and twice applies once; the consumer prunes what the window let go', async () => {
    const db = await database();
    await liveProjects(db.pool, [1]);
    await deletedProjects(db.pool, [99]);
    const codec = codecFor(ns.topics);
    const good = occurrence(1, { projects: 1, seed: 'retention' });
    const stale = { ...occurrence(2, { seed: 'retention' }), project_id: 99 };
    await produceRaw(
      ns.topics.occurrences,
      await Promise.all(
        [good, stale].map(async (o) => ({
          key: occurrenceKey(o),
          value: await codec.encode('occurrences', o),
        })),
      ),
      0,
    );
    const consumer = await startCounter(ns, db.pool, {
      group: 'retention',
      env: { SHOAL_LEDGER_RESEND_WINDOW_HOURS: '1' },
      pruneEveryMs: 300,
    });
    running.push(consumer);
    await waitFor(
      'the good one applied and the stale one dead-lettered',
      async () =>
        (await storedNextOffset(db.pool, 'retention', ns.topics.occurrences)) === 2 &&
        (await unpublished(db.pool)) === 0,
    );
    expect(await ledger(db)).toEqual({
      [`occurrence:${good.id}`]: 'applied',
      [`occurrence:${stale.id}`]: 'dead_lettered',
    });

    // two hours on: the consumer's pruner lets the applied id go, the dead-lettered one stays
    await age(db, 'processed_messages', 'processed_at', 2);
    await waitFor(
      'the applied id pruned',
      async () => !(`occurrence:${good.id}` in (await ledger(db))),
      20_000,
    );
    expect(await ledger(db)).toEqual({ [`occurrence:${stale.id}`]: 'dead_lettered' });

    await liveProjects(db.pool, [99]);
    const letter = (await readAll(dlqTopic(ns.topics.occurrences))).find(
      (r) => r.headers[DLQ_HEADER.consumerGroup] === 'retention',
    )!;
    const replay: Raw = {
      key: letter.key!,
      value: letter.value,
      headers: { ...letter.headers, 'shoal.replay.from-topic': dlqTopic(ns.topics.occurrences) },
    };
    await produceRaw(ns.topics.occurrences, [replay, replay], 0);
    await waitFor(
      'the replays to commit',
      async () => (await storedNextOffset(db.pool, 'retention', ns.topics.occurrences)) === 4,
    );
    expect((await countsOf(db.pool))[`99:${stale.fingerprint[0]}`]).toBe(1);
    expect(await ledger(db)).toEqual({ [`occurrence:${stale.id}`]: 'replayed' });

    // and two hours later still: replayed once more, it is still a duplicate
    await age(db, 'processed_messages', 'processed_at', 2);
    await produceRaw(ns.topics.occurrences, [replay], 0);
    await waitFor(
      'the third replay to commit',
      async () => (await storedNextOffset(db.pool, 'retention', ns.topics.occurrences)) === 5,
    );
    expect((await countsOf(db.pool))[`99:${stale.fingerprint[0]}`]).toBe(1);
    expect(await ledger(db)).toEqual({ [`occurrence:${stale.id}`]: 'replayed' });
  });
  it('is the replay of the group that dead-lettered it: a group that applied the message, past its window, does not apply it again', async () => {
    const own = await isolatedTopics({ partitions: { occurrences: 1 } });
    const [owner, other] = [await database(), await database()];
    await liveProjects(owner.pool, [1]);
    await deletedProjects(owner.pool, [99]);
    await liveProjects(other.pool, [1, 99]);
    const topic = own.topics.occurrences;
    const stale = { ...occurrence(3, { seed: 'owner' }), project_id: 99 };
    const value = await codecFor(own.topics).encode('occurrences', stale);
    await produceRaw(topic, [{ key: occurrenceKey(stale), value }], 0);
    const consumers = await Promise.all(
      (
        [
          [owner, 'owner'],
          [other, 'other'],
        ] as const
      ).map(([db, group]) =>
        startCounter(own, db.pool, {
          group,
          env: { SHOAL_LEDGER_RESEND_WINDOW_HOURS: '1' },
          pruneEveryMs: 300,
        }),
      ),
    );
    const settled = (db: IsolatedDatabase, group: string, next: number) =>
      waitFor(
        `${group} at offset ${next}`,
        async () =>
          (await storedNextOffset(db.pool, group, topic)) === next &&
          (await unpublished(db.pool)) === 0,
      );
    try {
      await settled(owner, 'owner', 1);
      await settled(other, 'other', 1);
      const fingerprint = `99:${stale.fingerprint[0]}`;
      expect((await countsOf(other.pool))[fingerprint]).toBe(1);
      expect((await countsOf(owner.pool))[fingerprint]).toBeUndefined();

      // the other group's window passes; the owner's cause is fixed and its dead letter replayed
      await age(other, 'processed_messages', 'processed_at', 2);
      await waitFor(
        'the other group to forget the id',
        async () => Object.keys(await ledger(other)).length === 0,
      );
      await liveProjects(owner.pool, [99]);
      const letter = (await readAll(dlqTopic(topic))).find(
        (r) => r.headers[DLQ_HEADER.consumerGroup] === 'owner',
      )!;
      await produceRaw(
        topic,
        [{ key: letter.key!, value: letter.value, headers: letter.headers }],
        0,
      );
      await settled(owner, 'owner', 2);
      await settled(other, 'other', 2);
      expect((await countsOf(owner.pool))[fingerprint]).toBe(1);
      expect((await countsOf(other.pool))[fingerprint]).toBe(1);
    } finally {
      await Promise.all(consumers.map((c) => c.stop()));
      await own.drop();
    }
  });
});
