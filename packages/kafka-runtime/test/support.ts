import { createHash } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  Codec,
  createRegistry,
  occurrenceKey,
  type Occurrence,
  type TopicKey,
} from '@shoal/contracts';
import { runtimeMigrationsDir, serviceSchema, type Pool } from '@shoal/db';
import {
  connections,
  isolatedDatabase,
  isolatedTopics,
  kafka,
  spawnEntryPoint,
  uniqueName,
  waitFor,
  type IsolatedDatabase,
  type RunningEntryPoint,
} from '@shoal/testing';
import type { IHeaders } from 'kafkajs';

export const counterMigrations = path.join(
  path.dirname(fileURLToPath(import.meta.url)),
  'counter-service',
  'migrations',
);
export const migrationDirs = [runtimeMigrationsDir, counterMigrations];
/** A database as counter-service/main.ts makes it: its tables in its schema, which the pool's search_path names. */
export const counterDatabase = { dirs: migrationDirs, schema: serviceSchema('counter') };

export const codecFor = (topics: Record<TopicKey, string>) =>
  new Codec(createRegistry(connections().SCHEMA_REGISTRY_URL), topics);

export const uuidOf = (seed: string) => {
  const h = createHash('sha1').update(seed).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
};

/** The i-th synthetic occurrence: `projects` projects, `fingerprints` fingerprints per project, deterministic ids. */
export function occurrence(
  i: number,
  shape: { projects?: number; fingerprints?: number; seed?: string } = {},
): Occurrence {
  const { projects = 3, fingerprints = 10, seed = 'run' } = shape;
  return {
    id: uuidOf(`${seed}:${i}`),
    project_id: 1 + (i % projects),
    fingerprint: [`fp-${Math.floor(i / projects) % fingerprints}`],
    issue_title: `TypeError ${i % fingerprints}`,
    type: 1,
    detection_time: 1764000000 + i,
    event_id: uuidOf(`${seed}:event:${i}`).replace(/-/g, ''),
  };
}

export interface Raw {
  key: string;
  value: Buffer | null;
  headers?: IHeaders;
}

export async function produceRaw(
  topic: string,
  messages: Raw[],
  partition?: number,
): Promise<void> {
  const producer = kafka().producer({ idempotent: true });
  await producer.connect();
  try {
    for (let i = 0; i < messages.length; i += 2000) {
      await producer.send({
        topic,
        acks: -1,
        messages: messages.slice(i, i + 2000).map((m) => ({ ...m, partition })),
      });
    }
  } finally {
    await producer.disconnect();
  }
}

export async function encodeAll(codec: Codec, values: Occurrence[]): Promise<Raw[]> {
  return Promise.all(
    values.map(async (v) => ({
      key: occurrenceKey(v),
      value: await codec.encode('occurrences', v),
    })),
  );
}

/** Announces (or restores) the counter's projects `ids`. */
export async function liveProjects(pool: Pool, ids: number[]): Promise<void> {
  await pool.query(
    'INSERT INTO projects (id) SELECT unnest($1::int[]) ON CONFLICT (id) DO UPDATE SET deleted_at = NULL',
    [ids],
  );
}

/** Tombstones the counter's projects `ids`: occurrences naming them are stale references. */
export async function deletedProjects(pool: Pool, ids: number[]): Promise<void> {
  await pool.query(
    `INSERT INTO projects (id, deleted_at) SELECT unnest($1::int[]), now()
     ON CONFLICT (id) DO UPDATE SET deleted_at = now()`,
    [ids],
  );
}

export async function countsOf(pool: Pool): Promise<Record<string, number>> {
  const { rows } = await pool.query<{
    project_id: number;
    fingerprint: string;
    times_seen: number;
  }>('SELECT project_id, fingerprint, times_seen FROM occurrence_counts ORDER BY 1, 2');
  return Object.fromEntries(rows.map((r) => [`${r.project_id}:${r.fingerprint}`, r.times_seen]));
}

/** What occurrence_counts must hold after `values` were each applied once. */
export function expectedCounts(
  values: Pick<Occurrence, 'project_id' | 'fingerprint'>[],
): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const v of values)
    counts[`${v.project_id}:${v.fingerprint[0]}`] =
      (counts[`${v.project_id}:${v.fingerprint[0]}`] ?? 0) + 1;
  return counts;
}

export async function totalCount(pool: Pool): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(
    'SELECT coalesce(sum(times_seen), 0)::int AS n FROM occurrence_counts',
  );
  return rows[0]!.n;
}

/** Events not yet published from the outbox (`outbox`: where the service's outbox table is). */
export async function unpublished(pool: Pool, outbox = 'outbox'): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(
    `SELECT coalesce(sum(event_count), 0)::int AS n FROM ${outbox} WHERE published_at IS NULL`,
  );
  return rows[0]!.n;
}

export { waitFor } from '@shoal/testing';

export { readAll, type TopicRecord } from '@shoal/testing';

const counterMain = path.join(
  path.dirname(fileURLToPath(import.meta.url)),
  'counter-service',
  'main.ts',
);

/** The counter service as a child process (what the kill tests SIGKILL); ready once given partitions. */
export const spawnCounter = (env: NodeJS.ProcessEnv): RunningEntryPoint =>
  spawnEntryPoint(counterMain, env, '"partitions assigned"');

import { Kafka, logLevel } from 'kafkajs';
import { createLogger } from '@shoal/observability';
import {
  failurePolicyFromEnv,
  RelayThread,
  runConsumer,
  type RelayThreadSettings,
  type ConsumerOptions,
  type RunningConsumer,
} from '../src/index.js';
import { counterHandler, projectLookup } from './counter-service/handler.js';

/** The counter service in this process, on a test's topics and database. */
export function startCounter(
  ns: { topics: Record<TopicKey, string> },
  pool: Pool,
  overrides: Partial<ConsumerOptions<'occurrences'>> & {
    env?: Record<string, string>;
    brokers?: string[];
  } = {},
): Promise<RunningConsumer> {
  const { env = {}, brokers = connections().KAFKA_BROKERS, ...rest } = overrides;
  return runConsumer({
    group: uniqueName('counter-'),
    topics: ['occurrences'],
    topicNames: ns.topics,
    handle: counterHandler(ns.topics.groupEvents),
    lookups: [projectLookup],
    messageId: (o) => `occurrence:${o.id}`,
    pool,
    kafka: new Kafka({ brokers, clientId: uniqueName('counter-'), logLevel: logLevel.NOTHING }),
    codec: codecFor(ns.topics),
    failure: failurePolicyFromEnv(env),
    logger: createLogger('counter-test', process.env.TEST_LOG_LEVEL ?? 'silent'),
    consumerConfig: { sessionTimeout: 6000, heartbeatInterval: 500 },
    ...rest,
  });
}

/** The counter's relay in a thread of its own, as `runService` runs it (relay-thread.ts). */
export function counterRelayThread(
  ns: { namespace: string },
  databaseUrl: string,
  options: Partial<ConstructorParameters<typeof RelayThread>[1]> = {},
  kafka: RelayThreadSettings['kafka'] = { brokers: connections().KAFKA_BROKERS },
): RelayThread {
  return new RelayThread(
    {
      name: 'counter',
      databaseUrl,
      schema: serviceSchema('counter'),
      kafka: { clientId: uniqueName('counter-relay-'), ...kafka },
      registry: { url: connections().SCHEMA_REGISTRY_URL },
      topicNamespace: ns.namespace,
    },
    {
      logger: createLogger('counter-test', process.env.TEST_LOG_LEVEL ?? 'silent'),
      ...options,
    },
  );
}

export async function storedNextOffset(
  pool: Pool,
  group: string,
  topic: string,
  partition = 0,
): Promise<number> {
  const { rows } = await pool.query<{ next_offset: number }>(
    'SELECT next_offset FROM consumer_offsets WHERE consumer_group = $1 AND topic = $2 AND partition = $3',
    [group, topic, partition],
  );
  return rows[0]?.next_offset ?? -1;
}

/**
 * A counter consumer on one occurrences partition and a database of its own (projects 1 and 2 live),
 * with what the tests of one scenario ask of it: produce, wait until all is committed and published,
 * stop and drop.
 */
export interface CounterRun {
  ns: { topics: Record<TopicKey, string>; drop(): Promise<void> };
  db: IsolatedDatabase;
  consumer: RunningConsumer;
  group: string;
  produce(values: Occurrence[]): Promise<void>;
  settled(): Promise<void>;
  stop(): Promise<void>;
}

export async function counterRun(
  group: string,
  env: Record<string, string>,
  haltCheckMs = 500, // also how often held messages are re-driven and expired keys looked for
): Promise<CounterRun> {
  const ns = await isolatedTopics({ partitions: { occurrences: 1 } });
  const db = await isolatedDatabase(counterDatabase);
  await liveProjects(db.pool, [1, 2]);
  const consumer = await startCounter(ns, db.pool, { group, haltCheckMs, env });
  let produced = 0;
  return {
    ns,
    db,
    consumer,
    group,
    async produce(values) {
      await produceRaw(ns.topics.occurrences, await encodeAll(codecFor(ns.topics), values), 0);
      produced += values.length;
    },
    settled: () =>
      waitFor(
        'every produced message to commit and the outbox to be published',
        async () =>
          (await storedNextOffset(db.pool, group, ns.topics.occurrences)) === produced &&
          (await unpublished(db.pool)) === 0,
        90_000,
      ),
    async stop() {
      await consumer.stop();
      await Promise.all([db.drop(), ns.drop()]);
    },
  };
}
