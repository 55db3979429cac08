import { randomUUID } from 'node:crypto';
import path from 'node:path';
import {
  Codec,
  createRegistry,
  type DedupCommand,
  type EntityChange,
  type GroupEvent,
  type IncidentEvent,
  type TopicKey,
} from '@shoal/contracts';
import { runtimeMigrationsDir, serviceSchema, type Pool } from '@shoal/db';
import {
  failurePolicyFromEnv,
  HEADER,
  runConsumer,
  type RunningConsumer,
} from '@shoal/kafka-runtime';
import { createLogger } from '@shoal/observability';
import {
  connections,
  isolatedDatabase,
  isolatedTopics,
  kafka,
  readAll,
  repoRoot,
  uniqueName,
  type IsolatedDatabase,
  type IsolatedTopics,
} from '@shoal/testing';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll } from 'vitest';
import { dedupConfigFromEnv } from '../src/config.js';
import { dedupHandler } from '../src/handler.js';
import { lookups } from '../src/lookups.js';
import { dedupMessageId, dedupMigrationsDir, dedupTopics } from '../src/service.js';

/** Dedup against the real stack: its database, the service in this process, its inputs and outputs. */

export const dedupDatabase = {
  dirs: [runtimeMigrationsDir, dedupMigrationsDir],
  schema: serviceSchema('dedup'),
};

/** Dedup's main with the kill tests' fault injection (in stress/chaos, beside grouping's). */
export const dedupMain = path.join(repoRoot, 'stress', 'chaos', 'dedup-main.ts');

/** The dedup service in this process (what main.ts runs), on a test's topics and database. */
export function startDedup(
  topics: Record<TopicKey, string>,
  pool: Pool,
  group: string,
  env: Record<string, string> = {},
): Promise<RunningConsumer> {
  return runConsumer({
    group,
    topics: [...dedupTopics],
    topicNames: topics,
    handle: dedupHandler({ incidents: topics.incidents, config: dedupConfigFromEnv(env) }),
    lookups,
    messageId: dedupMessageId,
    pool,
    kafka: new Kafka({
      brokers: connections().KAFKA_BROKERS,
      clientId: uniqueName('dedup-'),
      logLevel: logLevel.NOTHING,
    }),
    codec: new Codec(createRegistry(connections().SCHEMA_REGISTRY_URL), topics),
    failure: failurePolicyFromEnv(env),
    logger: createLogger('dedup-test', process.env.TEST_LOG_LEVEL ?? 'silent'),
    consumerConfig: { sessionTimeout: 6000, heartbeatInterval: 500, maxWaitTimeInMs: 100 },
  });
}

/** Call at a test file's top level: topics and databases made through it are dropped after its tests. */
export function dedupTestKit() {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });
  return {
    async fresh(groupEventPartitions = 3): Promise<{ ns: IsolatedTopics; db: IsolatedDatabase }> {
      const ns = await isolatedTopics({ partitions: { groupEvents: groupEventPartitions } });
      const db = await isolatedDatabase(dedupDatabase);
      cleanups.push(
        () => ns.drop(),
        () => db.drop(),
      );
      return { ns, db };
    },
    async database(): Promise<IsolatedDatabase> {
      const db = await isolatedDatabase(dedupDatabase);
      cleanups.push(() => db.drop());
      return db;
    },
    async start(ns: IsolatedTopics, db: IsolatedDatabase, env: Record<string, string> = {}) {
      const consumer = await startDedup(ns.topics, db.pool, uniqueName('dedup-'), env);
      cleanups.push(() => consumer.stop());
      return consumer;
    },
    cleanup: (fn: () => Promise<unknown>) => void cleanups.push(fn),
  };
}

export const T0 = Date.parse('2026-11-30T08:00:00.000Z');
export const at = (seconds: number) => new Date(T0 + seconds * 1000).toISOString();

export function groupCreated(
  groupId: number,
  createdAtSeconds: number,
  hints: GroupEvent['dedup_hints'],
  project = 1,
): GroupEvent {
  return {
    event_id: randomUUID(),
    event_type: 'group_created',
    occurred_at: at(createdAtSeconds),
    group_id: groupId,
    project_id: project,
    short_id: `P-${groupId}`,
    primary_hash: `hash-${groupId}`,
    group_type: 1,
    level: 'error',
    title: hints?.message ?? 'x',
    status: 'unresolved',
    dedup_hints: hints,
  };
}

export function groupActivity(
  groupId: number,
  timesSeen: number,
  lastSeenSeconds: number,
  project = 1,
  delta = 1,
): GroupEvent {
  return {
    event_id: randomUUID(),
    event_type: 'group_activity',
    occurred_at: at(lastSeenSeconds),
    group_id: groupId,
    project_id: project,
    times_seen: timesSeen,
    times_seen_delta: delta,
    first_seen: at(0),
    last_seen: at(lastSeenSeconds),
  };
}

/** JSON values on a topic as upstream producers send them: unframed, each with its message id. */
export async function publishJson(
  topic: string,
  messages: { key: string; value: object; id: string }[],
) {
  const producer = kafka().producer({ idempotent: true });
  await producer.connect();
  try {
    await producer.send({
      topic,
      acks: -1,
      messages: messages.map((m) => ({
        key: m.key,
        value: JSON.stringify(m.value),
        headers: { [HEADER.messageId]: m.id },
      })),
    });
  } finally {
    await producer.disconnect();
  }
}

/** Group events as grouping's relay sends them: keyed by group id, the event id as message id. */
export const publishGroupEvents = (ns: IsolatedTopics, events: GroupEvent[]) =>
  publishJson(
    ns.topics.groupEvents,
    events.map((e) => ({ key: String(e.group_id), value: e, id: e.event_id })),
  );

export function command(
  value: Pick<DedupCommand, 'command' | 'incident_id'> & Partial<DedupCommand>,
): DedupCommand {
  return {
    command_id: randomUUID(),
    actor: 'ops@test',
    issued_at: at(10_000),
    ...value,
  };
}

export const publishCommands = (ns: IsolatedTopics, commands: DedupCommand[]) =>
  publishJson(
    ns.topics.dedupCommands,
    commands.map((c) => ({ key: String(c.incident_id), value: c, id: c.command_id })),
  );

/** An entity change as the CLI or upstream sends it, keyed by entity. */
export const changeEntity = (
  ns: IsolatedTopics,
  change: Pick<EntityChange, 'entity_kind' | 'entity_id' | 'change'> & Partial<EntityChange>,
) => {
  const value: EntityChange = { event_id: randomUUID(), occurred_at: at(20_000), ...change };
  return publishJson(ns.topics.entityChanges, [
    { key: `${value.entity_kind}:${value.entity_id}`, value, id: value.event_id },
  ]);
};

export const deleteGroup = (ns: IsolatedTopics, groupId: number | string, project = 1) =>
  changeEntity(ns, {
    entity_kind: 'group',
    entity_id: String(groupId),
    project_id: project,
    change: 'deleted',
  });

export interface MemberRow {
  group_id: number;
  incident_id: number | null;
  times_seen: number;
  last_seen: string | null;
  split: boolean;
  deleted: boolean;
}

export const members = async (db: IsolatedDatabase): Promise<MemberRow[]> =>
  (
    await db.pool.query<MemberRow>(
      `SELECT group_id::int, incident_id::int, times_seen::int,
              to_char(last_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS last_seen,
              split_at IS NOT NULL AS split, deleted_at IS NOT NULL AS deleted
       FROM members ORDER BY group_id`,
    )
  ).rows;

/** group id → incident id, for the groups that have one. */
export const incidentOf = async (db: IsolatedDatabase) =>
  new Map(
    (await members(db))
      .filter((m) => m.incident_id !== null)
      .map((m) => [m.group_id, m.incident_id!]),
  );

export const canonicalOf = async (db: IsolatedDatabase, incident: number) =>
  (
    await db.pool.query<{ canonical: number | null }>(
      'SELECT canonical_group_id::int AS canonical FROM incidents WHERE id = $1',
      [incident],
    )
  ).rows[0]?.canonical;

/** Every event dedup published on the incidents topic (registry-framed JSON: 5 bytes, then JSON). */
export const incidentEvents = async (
  ns: IsolatedTopics,
): Promise<(IncidentEvent & { key: string | null })[]> =>
  (await readAll(ns.topics.incidents))
    .map((r) => ({ key: r.key, ...(JSON.parse(r.value!.subarray(5).toString()) as IncidentEvent) }))
    .sort(
      (a, b) => a.occurred_at.localeCompare(b.occurred_at) || a.event_id.localeCompare(b.event_id),
    );

export const appliedCount = async (db: IsolatedDatabase) =>
  (
    await db.pool.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM processed_messages WHERE kind = 'applied'",
    )
  ).rows[0]!.n;

export const unpublished = async (db: IsolatedDatabase) =>
  (
    await db.pool.query<{ n: number }>(
      'SELECT coalesce(sum(event_count), 0)::int AS n FROM outbox WHERE published_at IS NULL',
    )
  ).rows[0]!.n;
