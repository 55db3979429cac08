import { dlqTopic } from '@shoal/contracts';
import { createPool, runtimeMigrationsDir, withTransaction, type Pool } from '@shoal/db';
import { createLogger, metricsRegistry } from '@shoal/observability';
import {
  connections,
  createTestTopics,
  isolatedDatabase,
  isolatedTopics,
  kafka,
  privateBroker,
  uniqueName,
  withAdmin,
  type IsolatedDatabase,
  type IsolatedTopics,
} from '@shoal/testing';
import { Kafka, logLevel, type RetryOptions } from 'kafkajs';
import { runner } from 'node-pg-migrate';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HEADER, OutboxRelay, type RelayHook } from '../src/index.js';
import { prune } from '../src/retention.js';
import { writeOutbox, type OutboxEvent, type RawOutboxEvent } from '../src/store.js';
import { codecFor, readAll, unpublished, waitFor, type TopicRecord } from './support.js';

let ns: IsolatedTopics;
const dbs: IsolatedDatabase[] = [];
const relays: OutboxRelay[] = [];
const schemaPools: Pool[] = [];
const ownTopics: string[] = [];

beforeAll(async () => {
  ns = await isolatedTopics({ partitions: { groupEvents: 1 } });
});
afterAll(async () => {
  await Promise.all(relays.map((r) => r.stop()));
  await Promise.all(schemaPools.map((p) => p.end()));
  await Promise.all([
    ...dbs.map((db) => db.drop()),
    ns.drop(),
    withAdmin((admin) => admin.deleteTopics({ topics: ownTopics })),
  ]);
});

async function database(): Promise<IsolatedDatabase> {
  const db = await isolatedDatabase();
  dbs.push(db);
  return db;
}

async function startRelay(
  pool: Pool,
  options: {
    hook?: (point: RelayHook) => void | Promise<void>;
    /** kafkajs' retries inside one round (its defaults unless given) */
    retry?: RetryOptions;
    /** Collects what the relay logs at warn and above: a round that failed says so */
    logged?: string[];
  } = {},
): Promise<OutboxRelay> {
  const { hook, retry, logged } = options;
  const relay = new OutboxRelay({
    pool,
    kafka: retry
      ? new Kafka({
          brokers: connections().KAFKA_BROKERS,
          clientId: uniqueName('relay-'),
          logLevel: logLevel.NOTHING,
          retry,
        })
      : kafka(uniqueName('relay-')),
    codec: codecFor(ns.topics),
    logger: logged
      ? pino({ level: 'warn' }, { write: (line: string) => void logged.push(line) })
      : createLogger('relay-test', process.env.TEST_LOG_LEVEL ?? 'silent'),
    pollMs: 100,
    hook,
  });
  await relay.start();
  relays.push(relay);
  return relay;
}

/** A round that failed (transiently: it is retried in place) logs this. */
const failedRound = 'outbox relay failed; retrying';
const failedRounds = (logged: string[]) => logged.filter((l) => l.includes(failedRound)).length;
/** kafkajs gives up on a round within a second, not after its default retries of about 10 s. */
const quickRetry: RetryOptions = { retries: 1, initialRetryTime: 100, maxRetryTime: 200 };

/**
 * `pool` as a relay uses it, counting its rounds: each begins a transaction on a client of its own,
 * whether or not it then takes the schema's lock.
 */
function countingRounds(pool: Pool): { pool: Pool; rounds: () => number } {
  let rounds = 0;
  const counted = new Proxy(pool, {
    get(target, property) {
      if (property === 'connect')
        return () => {
          rounds++;
          return target.connect();
        };
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { pool: counted, rounds: () => rounds };
}

/** Waits until the relay counted by `rounds` has begun `n` more rounds than it had. */
async function moreRounds(rounds: () => number, n: number): Promise<void> {
  const from = rounds();
  await waitFor(`${n} more relay rounds`, async () => rounds() >= from + n);
}

async function createTopic(config: { name: string; value: string }[] = []): Promise<string> {
  const topic = uniqueName(ns.namespace);
  ownTopics.push(topic);
  await createTestTopics([{ topic, numPartitions: 1, configEntries: config }]);
  return topic;
}

let eventNumber = 0;

/** A schema-valid group event on the namespace's groupEvents topic, keyed by its group. */
function groupEvent(groupId: number, overrides: Record<string, unknown> = {}): OutboxEvent {
  const eventId = `00000000-0000-4000-8000-${String(++eventNumber).padStart(12, '0')}`;
  return {
    eventId,
    topic: ns.topics.groupEvents,
    key: String(groupId),
    payload: {
      event_id: eventId,
      event_type: 'occurrence_grouped',
      occurred_at: '2026-11-30T00:00:00.000Z',
      group_id: groupId,
      project_id: 1,
      occurrence_id: eventId,
      ...overrides,
    },
    headers: {},
  };
}

const base64 = (bytes: number[] | Buffer) => Buffer.from(bytes).toString('base64');

function rawEvent(topic: string, value: Buffer | null, key: Buffer | null = null): RawOutboxEvent {
  const eventId = `dead-letter-${++eventNumber}`;
  return {
    eventId,
    topic,
    raw: true,
    keyBase64: key && base64(key),
    valueBase64: value && base64(value),
    headers: { [HEADER.messageId]: `original-${eventNumber}` },
  };
}

const commit = (pool: Pool, events: OutboxEvent[]) =>
  withTransaction(pool, (tx) => writeOutbox(tx, events));

/** Message ids in the order they first appear (a re-send publishes an event again, same id). */
const idsOf = (records: TopicRecord[]) => [
  ...new Set(records.map((r) => r.headers[HEADER.messageId])),
];

const idsOn = async (topic: string) => idsOf(await readAll(topic));

describe('order: a row goes out once every transaction that began before it has ended', () => {
  let db: IsolatedDatabase;
  let rounds: () => number;
  beforeAll(async () => {
    db = await database();
    const counted = countingRounds(db.pool);
    rounds = counted.rounds;
    await startRelay(counted.pool);
  });

  it('an open transaction that wrote first is not overtaken by one that committed after it', async () => {
    const first = groupEvent(101, { occurrence_id: 'first' });
    const second = groupEvent(101, { occurrence_id: 'second' });
    const open = await db.pool.connect();
    try {
      await open.query('BEGIN');
      await writeOutbox(open, [first]); // lower seq, lower txid, still open
      await commit(db.pool, [second]);
      await moreRounds(rounds, 10);
      expect(await idsOn(ns.topics.groupEvents)).toEqual([]);
      expect(await unpublished(db.pool)).toBe(1);
      await open.query('COMMIT');
    } finally {
      open.release();
    }
    await waitFor('both published', async () => (await unpublished(db.pool)) === 0);
    expect(await idsOn(ns.topics.groupEvents)).toEqual([first.eventId, second.eventId]);
  });

  it('a transaction that began first but wrote after another committed goes out after it (seq, not txid)', async () => {
    const already = (await idsOn(ns.topics.groupEvents)).length;
    const begunFirst = groupEvent(102, { occurrence_id: 'begun-first' });
    const committedFirst = groupEvent(102, { occurrence_id: 'committed-first' });
    const older = await db.pool.connect();
    try {
      await older.query('BEGIN');
      await older.query('SELECT pg_current_xact_id()'); // takes its transaction id now
      await commit(db.pool, [committedFirst]); // a younger transaction, committed first
      await writeOutbox(older, [begunFirst]); // written after seeing it
      await older.query('COMMIT');
    } finally {
      older.release();
    }
    await waitFor('both published', async () => (await unpublished(db.pool)) === 0);
    expect((await idsOn(ns.topics.groupEvents)).slice(already)).toEqual([
      committedFirst.eventId,
      begunFirst.eventId,
    ]);
  });
});

describe('an event that cannot be encoded or produced is set aside; the rest flows', () => {
  it('schema-invalid, not a Shoal topic, too large for the broker: failure rows and a metric', async () => {
    const db = await database();
    const small = await createTopic([{ name: 'max.message.bytes', value: '2000' }]);
    const failedBefore = await failedTotal();
    const row = [
      groupEvent(201),
      groupEvent(201, { group_id: 'not a number' }),
      { ...groupEvent(201), topic: 'not-a-shoal-topic' },
      rawEvent(small, Buffer.from('small 1')),
      rawEvent(small, Buffer.alloc(5000, 1)),
      rawEvent(small, Buffer.from('small 2')),
      groupEvent(201),
    ];
    const later = [groupEvent(202)];
    await commit(db.pool, row);
    await commit(db.pool, later);
    await startRelay(db.pool);
    await waitFor('every row handled', async () => (await unpublished(db.pool)) === 0);

    const { rows: failures } = await db.pool.query(
      'SELECT ordinal, event_id, topic, event, error_class, error_message FROM outbox_failures ORDER BY seq, ordinal',
    );
    expect(failures).toEqual([
      expect.objectContaining({
        ordinal: 2,
        event_id: row[1]!.eventId,
        topic: ns.topics.groupEvents,
        event: row[1],
        error_class: 'ContractError',
      }),
      expect.objectContaining({
        ordinal: 3,
        topic: 'not-a-shoal-topic',
        error_class: 'UnknownTopicError',
      }),
      expect.objectContaining({
        ordinal: 5,
        topic: small,
        error_class: 'KafkaJSProtocolError',
        error_message: expect.stringContaining('larger than the max message size'),
      }),
    ]);
    expect(await failedTotal()).toBe(failedBefore + 3);
    expect(await idsOn(ns.topics.groupEvents)).toEqual(
      expect.arrayContaining([row[0]!.eventId, row[6]!.eventId, later[0]!.eventId]),
    );
    const onSmall = await readAll(small);
    expect(idsOf(onSmall)).toEqual([
      row[3]!.headers[HEADER.messageId],
      row[5]!.headers[HEADER.messageId],
    ]);
  });

  it('a transient produce error (topic not there yet) is retried in place, nothing set aside', async () => {
    const db = await database();
    const topic = uniqueName(ns.namespace);
    const event = rawEvent(topic, Buffer.from('waits for its topic'));
    await commit(db.pool, [event, groupEvent(301)]);
    const logged: string[] = [];
    await startRelay(db.pool, { retry: quickRetry, logged });
    await waitFor('rounds to fail transiently', async () => failedRounds(logged) >= 2);
    expect(await unpublished(db.pool)).toBe(2);
    ownTopics.push(topic);
    await createTestTopics([{ topic, numPartitions: 1 }]);
    await waitFor(
      'published once its topic exists',
      async () => (await unpublished(db.pool)) === 0,
      120_000,
    );
    expect(idsOf(await readAll(topic))).toEqual([event.headers[HEADER.messageId]]);
    const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM outbox_failures');
    expect(rows[0].n).toBe(0);
  }, 180_000);
});

describe('the broker down', () => {
  it('mid-run: the round is retried in place, nothing set aside, all published once it is back', async () => {
    // a broker of its own on free ports, so stopping it disturbs no other test (and no broker left
    // running by an interrupted run is mistaken for it); its topic holds raw events (no registry)
    const broker = await privateBroker();
    const previous = process.env.KAFKA_BROKERS;
    process.env.KAFKA_BROKERS = broker.brokers.join(','); // kafka(), withAdmin(), createTestTopics() and readAll() use it
    let relay: OutboxRelay | undefined;
    try {
      const db = await database();
      const topic = uniqueName(ns.namespace);
      await createTestTopics([{ topic, numPartitions: 1 }]);
      const before = rawEvent(topic, Buffer.from('before'));
      await commit(db.pool, [before]);
      const logged: string[] = [];
      relay = await startRelay(db.pool, { retry: quickRetry, logged });
      await waitFor('published', async () => (await unpublished(db.pool)) === 0);
      broker.stop();
      const during = rawEvent(topic, Buffer.from('during'));
      await commit(db.pool, [during]);
      await waitFor(
        'rounds to fail while the broker is down',
        async () => failedRounds(logged) >= 2,
      );
      expect(await unpublished(db.pool)).toBe(1);
      broker.start();
      await waitFor(
        'published once the broker is back',
        async () => (await unpublished(db.pool)) === 0,
        120_000,
      );
      expect(idsOf(await readAll(topic))).toEqual([
        before.headers[HEADER.messageId],
        during.headers[HEADER.messageId],
      ]);
      const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM outbox_failures');
      expect(rows[0].n).toBe(0);
    } finally {
      if (relay) {
        relays.splice(relays.indexOf(relay), 1);
        await relay.stop();
      }
      if (previous === undefined) delete process.env.KAFKA_BROKERS;
      else process.env.KAFKA_BROKERS = previous;
      broker.remove();
    }
  }, 300_000);
});

async function failedTotal(): Promise<number> {
  const metric = await metricsRegistry.getSingleMetric('shoal_outbox_failed_total')!.get();
  return metric.values.reduce((n, v) => n + v.value, 0);
}

describe('dead letters (raw events) are produced verbatim', () => {
  it('key and value bytes (null, not UTF-8) and headers exactly as written; the message id kept', async () => {
    const db = await database();
    const topic = dlqTopic(ns.topics.occurrences);
    const notUtf8 = Buffer.from([0xff, 0xfe, 0x00, 0xc3, 0x28, 0x80]);
    const nullValue: RawOutboxEvent = {
      ...rawEvent(topic, null, notUtf8),
      headers: {
        [HEADER.messageId]: 'occurrences:0:17',
        'shoal.dlq.reason': 'decode_error',
        'shoal.dlq.attempt-count': '2',
      },
      timestamp: '1764000000123',
    };
    const nullKey = rawEvent(topic, Buffer.concat([notUtf8, Buffer.from('tail')]));
    await commit(db.pool, [nullValue, nullKey]);
    const { rows: view } = await db.pool.query(
      'SELECT event_id, raw FROM outbox_events ORDER BY ordinal',
    );
    expect(view).toEqual([
      { event_id: nullValue.eventId, raw: true },
      { event_id: nullKey.eventId, raw: true },
    ]);
    await startRelay(db.pool);
    await waitFor('published', async () => (await unpublished(db.pool)) === 0);

    const [first, second, ...rest] = await readAll(topic);
    expect(rest).toEqual([]);
    expect(first!.keyBytes).toEqual(notUtf8);
    expect(first!.value).toBeNull();
    expect(first!.headers).toEqual(nullValue.headers);
    expect(first!.timestamp).toBe('1764000000123');
    expect(second!.keyBytes).toBeNull();
    expect(second!.value).toEqual(Buffer.concat([notUtf8, Buffer.from('tail')]));
    expect(second!.headers).toEqual(nullKey.headers);
  });
});

describe('one relay per service schema', () => {
  /** A service schema of its own in `db`: the runtime's tables, and a pool whose search_path names it. */
  async function serviceSchema(db: IsolatedDatabase, schema: string): Promise<Pool> {
    await runner({
      databaseUrl: db.url,
      dir: runtimeMigrationsDir,
      direction: 'up',
      count: Infinity,
      migrationsTable: 'pgmigrations',
      schema,
      createSchema: true,
      checkOrder: true,
      log: () => undefined,
    });
    const url = new URL(db.url);
    url.searchParams.set('options', `-c search_path=${schema}`);
    const pool = createPool(url.toString());
    schemaPools.push(pool);
    return pool;
  }

  it('two schemas of one database publish side by side; a second relay of one schema waits', async () => {
    const db = await isolatedDatabase({ migrate: false });
    dbs.push(db);
    const [a, b] = [await serviceSchema(db, 'svc_a'), await serviceSchema(db, 'svc_b')];
    let releaseA!: () => void;
    const aHolds = new Promise<void>((resolve) => (releaseA = resolve));
    let aInRound!: () => void;
    const aEntered = new Promise<void>((resolve) => (aInRound = resolve));
    const aFirst = groupEvent(401);
    await commit(a, [aFirst]);
    await startRelay(a, {
      hook: async () => {
        aInRound();
        await aHolds; // mid-round: published, not yet marked, its lock held
      },
    });
    await aEntered;
    const aSecond = groupEvent(401);
    try {
      const bEvent = groupEvent(402);
      await commit(b, [bEvent]);
      await startRelay(b);
      await waitFor(
        'schema b published while schema a is mid-round',
        async () => (await idsOn(ns.topics.groupEvents)).includes(bEvent.eventId),
        20_000,
      );

      await commit(a, [aSecond]);
      const second = countingRounds(a); // a second relay of schema a
      await startRelay(second.pool);
      await moreRounds(second.rounds, 10);
      expect(await idsOn(ns.topics.groupEvents)).not.toContain(aSecond.eventId);
    } finally {
      releaseA();
    }
    await waitFor('schema a drained', async () => (await unpublished(a)) === 0);
    const ids = await idsOn(ns.topics.groupEvents);
    expect(ids.indexOf(aFirst.eventId)).toBeLessThan(ids.indexOf(aSecond.eventId));
  });
});

describe('pruning', () => {
  it('deletes in batches until none is left: published outbox rows after a day, failures after 14 days', async () => {
    const db = await database();
    await db.pool.query(`
      INSERT INTO outbox (events, event_count, published_at)
        SELECT '[{}]', 1, now() - interval '2 days' FROM generate_series(1, 5);
      INSERT INTO outbox (events, event_count, published_at) VALUES ('[{}]', 1, now()), ('[{}]', 1, NULL);
      INSERT INTO outbox_failures (seq, ordinal, event_id, topic, event, error_class, error_message, failed_at)
        SELECT n, 1, 'e' || n, 't', '{}', 'E', 'm', now() - interval '15 days' FROM generate_series(1, 5) n;
      INSERT INTO outbox_failures (seq, ordinal, event_id, topic, event, error_class, error_message, failed_at)
        VALUES (6, 1, 'recent', 't', '{}', 'E', 'm', now() - interval '13 days');`);
    expect(await prune(db.pool, 3_600_000, { size: 2 })).toMatchObject({
      outbox: 5,
      outboxFailures: 5,
    });
    const { rows } = await db.pool.query<{ outbox: number; failures: string[] }>(
      `SELECT (SELECT count(*)::int FROM outbox) AS outbox,
              (SELECT array_agg(event_id) FROM outbox_failures) AS failures`,
    );
    expect(rows[0]).toEqual({ outbox: 2, failures: ['recent'] });
  });
});
