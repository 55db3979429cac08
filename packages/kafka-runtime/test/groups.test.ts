import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Codec, createRegistry } from '@shoal/contracts';
import {
  connections,
  freePort,
  isolatedDatabase,
  isolatedTopics,
  spawnEntryPoint,
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
  it('refuses the rebuild mode (shoal rebuild runs one consumer group): exit 1 naming why', async () => {
    const service = spawnEntryPoint(
      twoGroups,
      {
        DATABASE_URL: connections().DATABASE_URL,
        SHOAL_REBUILD_SCHEMA: 'counter_rebuild',
        SHOAL_REBUILD_KAFKA_GROUP: 'rebuild-of-two',
        SHOAL_REBUILD_STOP_AT: '{}',
      },
      '"consumer running"',
    );
    expect(await service.exited).toBe(1);
    expect(service.output.join('\n')).toContain(
      'runs 2 consumer groups; the rebuild mode runs one',
    );
  });
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
