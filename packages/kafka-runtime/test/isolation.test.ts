import { dlqTopic, type Occurrence } from '@shoal/contracts';
import { metricsRegistry, startOpsServer, type Readiness } from '@shoal/observability';
import {
  isolatedDatabase,
  isolatedTopics,
  type IsolatedDatabase,
  type IsolatedTopics,
} from '@shoal/testing';
import { afterAll, describe, expect, it } from 'vitest';
import { DLQ_HEADER, type Lookup, type RunningConsumer } from '../src/index.js';
import {
  codecFor,
  encodeAll,
  expectedCounts,
  countsOf,
  liveProjects,
  counterDatabase,
  occurrence,
  produceRaw,
  readAll,
  startCounter,
  storedNextOffset,
  totalCount,
  unpublished,
  waitFor,
} from './support.js';

/**
 * Errors thrown outside the handler (here: in a lookup) go through the same classifier: a
 * permanent one sets aside the message that caused it, a transient one is retried, and one that
 * lasts is escalated.
 */

let trouble: 'none' | 'statement-timeout' | 'connection-lost' = 'none';

/** A service's project lookup that casts ids to `int` (so a 64-bit id fails it with 22003), with troubles on demand. */
const troubledLookup = (db: () => IsolatedDatabase): Lookup<Occurrence> => ({
  entity: 'project',
  unknown: 'announce',
  refs: (m) => m.value.project_id,
  load: async (ids, tx) => {
    if (trouble === 'statement-timeout') {
      await tx.query("SET LOCAL statement_timeout = '20ms'");
      await tx.query('SELECT pg_sleep(1)'); // 57014
    }
    if (trouble === 'connection-lost') {
      const { rows } = await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      await db().pool.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
    }
    const { rows } = await tx.query<{ id: string; deleted_at: Date | null }>(
      'SELECT id::text, deleted_at FROM projects WHERE id = ANY($1::int[])',
      [ids],
    );
    return new Map(rows.map((r) => [r.id, r.deleted_at]));
  },
});

const running: RunningConsumer[] = [];
const dbs: IsolatedDatabase[] = [];
const namespaces: IsolatedTopics[] = [];

afterAll(async () => {
  trouble = 'none';
  await Promise.all(running.map((r) => r.stop()));
  await Promise.all([...dbs.map((db) => db.drop()), ...namespaces.map((ns) => ns.drop())]);
});

/** A database and one-partition topics of the test's own. */
async function fresh(): Promise<{ db: IsolatedDatabase; ns: IsolatedTopics }> {
  const [db, ns] = await Promise.all([
    isolatedDatabase(counterDatabase),
    isolatedTopics({ partitions: { occurrences: 1 } }),
  ]);
  dbs.push(db);
  namespaces.push(ns);
  await liveProjects(db.pool, [1, 2, 3]);
  return { db, ns };
}

async function metricTotal(name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = await metricsRegistry.getSingleMetric(name)!.get();
  return metric.values
    .filter((v) => Object.entries(labels).every(([k, value]) => v.labels[k] === value))
    .reduce((n, v) => n + v.value, 0);
}

describe('a permanent error outside the handler', () => {
  it('a lookup failing with SQLSTATE 22003 on one message dead-letters that message, and the rest is applied', async () => {
    const { db, ns } = await fresh();
    const good = Array.from({ length: 10 }, (_, i) => occurrence(i, { seed: 'class-22' }));
    // a 16-digit Sentry project id: valid for the schema, out of range for the lookup's int cast
    const huge = { ...occurrence(100, { seed: 'class-22' }), project_id: 4_503_599_627_370_495 };
    const codec = codecFor(ns.topics);
    await produceRaw(
      ns.topics.occurrences,
      await encodeAll(codec, [...good.slice(0, 5), huge, ...good.slice(5)]),
      0,
    );
    running.push(
      await startCounter(ns, db.pool, { group: 'class-22', lookups: [troubledLookup(() => db)] }),
    );
    await waitFor(
      'the batch to commit and its dead letter to be published',
      async () =>
        (await storedNextOffset(db.pool, 'class-22', ns.topics.occurrences)) === 11 &&
        (await unpublished(db.pool)) === 0,
    );
    expect(await countsOf(db.pool)).toEqual(expectedCounts(good));
    const { rows } = await db.pool.query(
      'SELECT "offset", reason, action, error_message FROM message_failures',
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ offset: 5, reason: 'processing_error', action: 'dlq' });
    expect(rows[0].error_message).toMatch(/out of range for type integer/);
    const dlq = (await readAll(dlqTopic(ns.topics.occurrences))).filter(
      (r) => r.headers[DLQ_HEADER.consumerGroup] === 'class-22',
    );
    expect(dlq.map((r) => r.headers[DLQ_HEADER.originalOffset])).toEqual(['5']);
  });
});

describe('transient errors outside the handler', () => {
  it('a statement timeout (57014) and a lost connection in a lookup are retried, never dead-lettered', async () => {
    const { db, ns } = await fresh();
    const values = Array.from({ length: 20 }, (_, i) => occurrence(i, { seed: 'transient-22' }));
    await produceRaw(ns.topics.occurrences, await encodeAll(codecFor(ns.topics), values), 0);
    const retriesBefore = await metricTotal('shoal_transient_retries_total');
    trouble = 'statement-timeout';
    running.push(
      await startCounter(ns, db.pool, {
        group: 'lookup-transient',
        lookups: [troubledLookup(() => db)],
      }),
    );
    await waitFor(
      'retries on the statement timeout',
      async () => (await metricTotal('shoal_transient_retries_total')) >= retriesBefore + 2,
    );
    trouble = 'connection-lost';
    const retriesOnTimeout = await metricTotal('shoal_transient_retries_total');
    await waitFor(
      'retries on the lost connection',
      async () => (await metricTotal('shoal_transient_retries_total')) >= retriesOnTimeout + 2,
    );
    expect(await totalCount(db.pool)).toBe(0);
    trouble = 'none';
    await waitFor(
      'every message applied',
      async () =>
        (await storedNextOffset(db.pool, 'lookup-transient', ns.topics.occurrences)) ===
        values.length,
    );
    expect(await countsOf(db.pool)).toEqual(expectedCounts(values));
    const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM message_failures');
    expect(rows[0].n).toBe(0);
  });

  it('a transient error that outlasts its deadline is escalated: metric, /readyz down, until it passes', async () => {
    const { db, ns } = await fresh();
    const values = Array.from({ length: 5 }, (_, i) => occurrence(i, { seed: 'escalated' }));
    await produceRaw(ns.topics.occurrences, await encodeAll(codecFor(ns.topics), values), 0);
    const group = 'escalated';
    const labels = { group, topic: ns.topics.occurrences, partition: '0' };
    trouble = 'statement-timeout';
    const consumer = await startCounter(ns, db.pool, {
      group,
      lookups: [troubledLookup(() => db)],
      transientEscalateMs: 2000,
    });
    running.push(consumer);
    const ops = await startOpsServer(0, { consumer: consumer.check });
    const readyz = async () => {
      const response = await fetch(`http://127.0.0.1:${ops.port}/readyz`);
      return { status: response.status, body: (await response.json()) as Readiness['body'] };
    };
    try {
      await waitFor('the first retry', async () =>
        (await metricsRegistry.getSingleMetric('shoal_transient_retries_total')!.get()).values.some(
          (v) => v.labels.group === group,
        ),
      );
      expect((await readyz()).status).toBe(200); // retrying, not yet past the deadline
      await waitFor(
        'the escalation',
        async () => (await metricTotal('shoal_transient_escalated', labels)) === 1,
        20_000,
      );
      const degraded = await readyz();
      expect(degraded.status).toBe(503);
      expect(degraded.body.checks.consumer).toMatchObject({
        status: 'down',
        error: expect.stringContaining(`${ns.topics.occurrences}[0] stuck`),
      });
      expect(JSON.stringify(degraded.body.checks.consumer)).toContain('statement timeout');

      trouble = 'none';
      await waitFor('the partition to move again', async () => (await readyz()).status === 200);
      expect(await metricTotal('shoal_transient_escalated', labels)).toBe(0);
      await waitFor('every message applied', async () => (await totalCount(db.pool)) === 5);
    } finally {
      await ops.close();
    }
  });
});
