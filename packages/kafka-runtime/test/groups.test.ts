import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Codec, createRegistry } from '@shoal/contracts';
import {
  connections,
  freePort,
  isolatedDatabase,
  isolatedTopics,
  spawnEntryPoint,
  uniqueName,
  waitFor,
  type IsolatedDatabase,
  type IsolatedTopics,
  type RunningEntryPoint,
} from '@shoal/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { consumerGroup, startGroups } from '../src/index.js';
import { POISON_TITLE } from './counter-service/handler.js';
import { encodeAll, occurrence, produceRaw } from './support.js';

// runService with more than one consumer group in one process (src/groups.ts), as lifecycle runs
// intake and decide: test/counter-service/two-groups.ts counts occurrences in one group and reads
// the group events it emits back in another, against the real stack.

const twoGroups = path.join(
  path.dirname(fileURLToPath(import.meta.url)),
  'counter-service',
  'two-groups.ts',
);
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

async function start(env: Record<string, string> = {}): Promise<{
  ns: IsolatedTopics;
  db: IsolatedDatabase;
  service: RunningEntryPoint;
  opsPort: number;
  produce(values: ReturnType<typeof occurrence>[]): Promise<void>;
  nextOffset(group: string, topic: string): Promise<number>;
}> {
  const ns = await isolatedTopics({ partitions: { occurrences: 1, groupEvents: 2 } });
  const db = await isolatedDatabase({ migrate: false });
  cleanups.push(
    () => ns.drop(),
    () => db.drop(),
  );
  const opsPort = await freePort();
  const service = spawnEntryPoint(
    twoGroups,
    {
      DATABASE_URL: db.url,
      SHOAL_TOPIC_NAMESPACE: ns.namespace,
      SHOAL_OPS_PORT: String(opsPort),
      SHOAL_SESSION_TIMEOUT_MS: '6000',
      SHOAL_HEARTBEAT_SECONDS: '1',
      SHOAL_REFERENCE_PROJECT: 'create',
      ...env,
    },
    '"consumer running"',
  );
  cleanups.push(async () => {
    if (service.child.exitCode === null) service.child.kill('SIGKILL');
    await service.exited;
  });
  await service.ready;
  const codec = new Codec(createRegistry(connections().SCHEMA_REGISTRY_URL), ns.topics);
  return {
    ns,
    db,
    service,
    opsPort,
    produce: async (values) => produceRaw(ns.topics.occurrences, await encodeAll(codec, values), 0),
    nextOffset: async (group, topic) =>
      Number(
        (
          await db.pool.query<{ n: string }>(
            'SELECT sum(next_offset)::text AS n FROM counter.consumer_offsets WHERE consumer_group = $1 AND topic = $2',
            [group, topic],
          )
        ).rows[0]?.n ?? 0,
      ),
  };
}

describe('runService with two consumer groups', () => {
  it('runs both in one schema under their own group ids; ready when both are, a heartbeat each; SIGTERM lets a batch in flight commit and stops both, exit 0', async () => {
    const { ns, db, service, opsPort, produce, nextOffset } = await start();
    await waitFor(
      'both groups running',
      async () => service.output.filter((l) => l.includes('"consumer running"')).length === 2,
    );
    await produce(Array.from({ length: 30 }, (_, i) => occurrence(i, { seed: 'groups' })));
    await waitFor(
      'count applied every occurrence and echo every group event it emitted',
      async () =>
        (await nextOffset('shoal.counter.count', ns.topics.occurrences)) === 30 &&
        (await nextOffset('shoal.counter.echo', ns.topics.groupEvents)) === 30,
    );
    const { rows: counted } = await db.pool.query<{ n: number }>(
      'SELECT sum(times_seen)::int AS n FROM counter.occurrence_counts',
    );
    expect(counted[0]!.n).toBe(30);
    // each group's ledger rows under its own id
    const { rows: ledger } = await db.pool.query<{ consumer_group: string; n: number }>(
      'SELECT consumer_group, count(*)::int AS n FROM counter.processed_messages GROUP BY 1 ORDER BY 1',
    );
    expect(ledger).toEqual([
      { consumer_group: 'shoal.counter.count', n: 30 },
      { consumer_group: 'shoal.counter.echo', n: 30 },
    ]);

    await waitFor(
      '/readyz 200',
      async () => (await fetch(`http://127.0.0.1:${opsPort}/readyz`)).ok,
    );
    const ready = (await (await fetch(`http://127.0.0.1:${opsPort}/readyz`)).json()) as {
      checks: Record<string, { status: string }>;
    };
    expect(Object.keys(ready.checks).sort()).toEqual(
      ['consumer:count', 'consumer:echo', 'kafka', 'postgres', 'registry'].sort(),
    );
    await waitFor('a heartbeat row per group', async () => {
      const { rows } = await db.pool.query<{ consumer_group: string }>(
        'SELECT consumer_group FROM counter.instance_heartbeats WHERE ready ORDER BY 1',
      );
      return (
        JSON.stringify(rows.map((r) => r.consumer_group)) ===
        JSON.stringify(['shoal.counter.count', 'shoal.counter.echo'])
      );
    });

    // SIGTERM while count's next batch waits inside its transaction: that batch commits first
    const blocker = await db.pool.connect();
    await blocker.query('BEGIN');
    await blocker.query(
      'SELECT 1 FROM counter.consumer_offsets WHERE consumer_group = $1 FOR UPDATE',
      ['shoal.counter.count'],
    );
    await produce(Array.from({ length: 10 }, (_, i) => occurrence(100 + i, { seed: 'groups' })));
    await waitFor('a batch waiting on the offset row', async () => {
      const waiting = await db.pool.query(
        "SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND application_name = 'counter' AND wait_event_type = 'Lock'",
        [db.name],
      );
      return (waiting.rowCount ?? 0) > 0;
    });
    service.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 1500));
    expect(service.child.exitCode).toBeNull(); // still finishing the batch in flight
    await blocker.query('ROLLBACK');
    blocker.release();
    expect(await service.exited).toBe(0);
    expect(await nextOffset('shoal.counter.count', ns.topics.occurrences)).toBe(40);
    expect(service.output.join('\n')).toContain('"signal":"SIGTERM"');
    const { rowCount } = await db.pool.query('SELECT 1 FROM counter.instance_heartbeats');
    expect(rowCount).toBe(0);
  }, 120_000);

  it('a group stopped by its dead-letter limit stops the other and the process, exit 1', async () => {
    const { service, produce } = await start({ SHOAL_DLQ_MAX_CONSECUTIVE: '2' });
    await produce(
      Array.from({ length: 5 }, (_, i) => ({
        ...occurrence(i, { seed: 'poison' }),
        issue_title: POISON_TITLE,
      })),
    );
    expect(await service.exited).toBe(1);
    const log = service.output.join('\n');
    expect(log).toContain('more than 2 failed messages in a row; stopping');
  }, 120_000);
  it('rebuild mode: every group into one shadow schema, each up to exactly its own live offsets, nothing published; a group not named in the stop offsets is refused', async () => {
    const { ns, db, service, produce, nextOffset } = await start();
    await produce(Array.from({ length: 30 }, (_, i) => occurrence(i, { seed: 'rebuild' })));
    await waitFor(
      'both groups applied all 30',
      async () =>
        (await nextOffset('shoal.counter.count', ns.topics.occurrences)) === 30 &&
        (await nextOffset('shoal.counter.echo', ns.topics.groupEvents)) === 30,
    );
    service.child.kill('SIGTERM');
    expect(await service.exited).toBe(0);
    // past the live offsets: on the topic, never applied live, so never rebuilt
    await produce(Array.from({ length: 10 }, (_, i) => occurrence(100 + i, { seed: 'rebuild' })));
    const { rows: live } = await db.pool.query<{
      consumer_group: string;
      topic: string;
      partition: number;
      next_offset: string;
    }>(
      'SELECT consumer_group, topic, partition, next_offset::text FROM counter.consumer_offsets ORDER BY 1, 2, 3',
    );
    const stopAt: Record<string, Record<string, Record<string, number>>> = {};
    for (const r of live)
      ((stopAt[r.consumer_group] ??= {})[r.topic] ??= {})[String(r.partition)] = Number(
        r.next_offset,
      );
    // echo's stop is below its live offset: each group stops at its own
    const echoStops = stopAt['shoal.counter.echo']![ns.topics.groupEvents]!;
    const [echoPartition] = Object.keys(echoStops).filter((p) => echoStops[p]! > 0);
    echoStops[echoPartition!]! -= 1;
    const rebuild = (stops: object) =>
      spawnEntryPoint(
        twoGroups,
        {
          DATABASE_URL: db.url,
          SHOAL_TOPIC_NAMESPACE: ns.namespace,
          SHOAL_REFERENCE_PROJECT: 'create',
          SHOAL_REBUILD_SCHEMA: 'counter_rebuild',
          SHOAL_REBUILD_KAFKA_GROUP: uniqueName('rebuild-of-two-'),
          SHOAL_REBUILD_STOP_AT: JSON.stringify(stops),
        },
        '"rebuild running"',
      );
    const refused = rebuild({ 'shoal.counter.count': stopAt['shoal.counter.count'] });
    expect(await refused.exited).toBe(78);
    expect(refused.output.join('\n')).toContain('shoal.counter.echo is not named');

    const rebuilt = rebuild(stopAt);
    expect(await rebuilt.exited, rebuilt.output.slice(-5).join('\n')).toBe(0);
    expect(rebuilt.output.filter((l) => l.includes('"rebuild running"'))).toHaveLength(2);
    const { rows: offsets } = await db.pool.query<(typeof live)[number]>(
      'SELECT consumer_group, topic, partition, next_offset::text FROM counter_rebuild.consumer_offsets ORDER BY 1, 2, 3',
    );
    expect(
      offsets.filter((r) => Number(r.next_offset) > 0),
      'each group at exactly its stops',
    ).toEqual(
      Object.entries(stopAt).flatMap(([group, topics]) =>
        Object.entries(topics).flatMap(([topic, parts]) =>
          Object.entries(parts)
            .filter(([, at]) => at > 0)
            .map(([p, at]) => ({
              consumer_group: group,
              topic,
              partition: Number(p),
              next_offset: String(at),
            })),
        ),
      ),
    );
    const { rows: rebuiltState } = await db.pool.query<{
      counted: number;
      echoed: number;
      events: number;
      published: number;
    }>(
      `SELECT (SELECT sum(times_seen)::int FROM counter_rebuild.occurrence_counts) AS counted,
              (SELECT count(*)::int FROM counter_rebuild.processed_messages
                WHERE consumer_group = 'shoal.counter.echo') AS echoed,
              (SELECT count(*)::int FROM counter_rebuild.outbox_events) AS events,
              (SELECT count(*)::int FROM counter_rebuild.outbox WHERE published_at IS NOT NULL) AS published`,
    );
    expect(rebuiltState[0]).toEqual({ counted: 30, echoed: 29, events: 30, published: 0 });
  }, 120_000);
});

describe('startGroups', () => {
  it('refuses two groups under one id and a name that cannot be part of one', async () => {
    const group = consumerGroup('same', { topics: ['occurrences'], handle: async () => undefined });
    await expect(
      startGroups('shoal.x', [group, group], () => {
        throw new Error('never started');
      }),
    ).rejects.toThrow('consumer group shoal.x.same is declared twice');
    expect(() =>
      consumerGroup('Intake Group', { topics: ['occurrences'], handle: async () => undefined }),
    ).toThrow('consumer group name "Intake Group"');
  });
});
