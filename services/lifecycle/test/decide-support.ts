import { createHash, randomUUID } from 'node:crypto';
import {
  Codec,
  createRegistry,
  type LifecycleCommand,
  type LifecycleEvent,
  type StatusChange,
  type TopicKey,
} from '@shoal/contracts';
import { migrationsDirBeside, runtimeMigrationsDir, serviceSchema } from '@shoal/db';
import {
  failurePolicyFromEnv,
  HEADER,
  runConsumer,
  startScheduled,
  type ConsumerOptions,
  type RunningConsumer,
} from '@shoal/kafka-runtime';
import { createLogger } from '@shoal/observability';
import {
  connections,
  isolatedDatabase,
  isolatedTopics,
  kafka,
  readAll,
  uniqueName,
  waitFor,
  type IsolatedDatabase,
  type IsolatedTopics,
} from '@shoal/testing';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll } from 'vitest';
import { lifecycleConfigFromEnv } from '../src/config.js';
import { decideHandler } from '../src/decide/handler.js';
import type { DecidedHere } from '../src/decided-here.js';
import { decideLookups, decideMessageId } from '../src/decide/lookups.js';
import { intakeHandler } from '../src/intake/handler.js';
import { intakeLookups, intakeMessageId } from '../src/intake/lookups.js';
import { intakeTopics } from '../src/service.js';
import { claimSweeper } from '../src/sweeper.js';

/** The decide consumer (and the sweeper) against the real stack: its database, topics, inputs and outputs. */

export const lifecycleDatabase = {
  dirs: [
    runtimeMigrationsDir,
    migrationsDirBeside(new URL('../src/config.ts', import.meta.url).href),
  ],
  schema: serviceSchema('lifecycle'),
};

const logger = () => createLogger('lifecycle-test', process.env.TEST_LOG_LEVEL ?? 'silent');

/** One of lifecycle's consumer groups, as the service runs it, on the test's topics and database. */
function startGroup<K extends TopicKey>(
  ns: IsolatedTopics,
  db: IsolatedDatabase,
  group: string,
  spec: Pick<ConsumerOptions<K>, 'topics' | 'handle' | 'lookups' | 'messageId'>,
  env: Record<string, string>,
  tuning: { maxBatchSize?: number; concurrency?: number },
): Promise<RunningConsumer> {
  return runConsumer({
    ...tuning,
    ...spec,
    group,
    topicNames: ns.topics,
    pool: db.pool,
    kafka: new Kafka({
      brokers: connections().KAFKA_BROKERS,
      clientId: uniqueName(`${group}-`),
      logLevel: logLevel.NOTHING,
    }),
    codec: new Codec(createRegistry(connections().SCHEMA_REGISTRY_URL), ns.topics),
    failure: failurePolicyFromEnv(env),
    logger: logger(),
    haltCheckMs: 500,
    consumerConfig: { sessionTimeout: 6000, heartbeatInterval: 500, maxWaitTimeInMs: 100 },
  });
}

export function startDecide(
  ns: IsolatedTopics,
  db: IsolatedDatabase,
  group: string,
  env: Record<string, string> = {},
  /** As the service sets them (SHOAL_MAX_BATCH_SIZE, SHOAL_PARTITION_CONCURRENCY); the runtime's defaults else. */
  tuning: { maxBatchSize?: number; concurrency?: number } = {},
  /** The agent API of this process to hand outcomes to, as the service does. */
  decidedHere?: DecidedHere,
): Promise<RunningConsumer> {
  const config = lifecycleConfigFromEnv(env);
  return startGroup(
    ns,
    db,
    group,
    {
      topics: ['lifecycleCommands'],
      handle: decideHandler({
        topics: { lifecycle: ns.topics.lifecycle, statusChanges: ns.topics.statusChanges },
        slaMs: config.slaMs,
        decidedHere,
      }),
      lookups: decideLookups,
      messageId: decideMessageId,
    },
    env,
    tuning,
  );
}

/** The intake consumer (group events, incidents, entity changes → system commands), its relay publishing them. */
export const startIntake = (
  ns: IsolatedTopics,
  db: IsolatedDatabase,
  group: string,
  env: Record<string, string> = {},
): Promise<RunningConsumer> =>
  startGroup(
    ns,
    db,
    group,
    {
      topics: [...intakeTopics],
      handle: intakeHandler({ lifecycleCommands: ns.topics.lifecycleCommands }),
      lookups: intakeLookups,
      messageId: intakeMessageId,
    },
    env,
    {},
  );

/** Call at a test file's top level: what it makes is dropped after the file's tests. */
export function decideTestKit() {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
  });
  return {
    async fresh(): Promise<{ ns: IsolatedTopics; db: IsolatedDatabase }> {
      const ns = await isolatedTopics();
      const db = await isolatedDatabase(lifecycleDatabase);
      cleanups.push(
        () => ns.drop(),
        () => db.drop(),
      );
      return { ns, db };
    },
    async database(): Promise<IsolatedDatabase> {
      const db = await isolatedDatabase(lifecycleDatabase);
      cleanups.push(() => db.drop());
      return db;
    },
    async start(
      ns: IsolatedTopics,
      db: IsolatedDatabase,
      env: Record<string, string> = {},
      group = uniqueName('decide-'),
    ) {
      const consumer = await startDecide(ns, db, group, env);
      cleanups.push(() => consumer.stop());
      return consumer;
    },
    async intake(ns: IsolatedTopics, db: IsolatedDatabase, group = uniqueName('intake-')) {
      const consumer = await startIntake(ns, db, group);
      cleanups.push(() => consumer.stop());
      return consumer;
    },
    /** The sweeper as the service runs it (scheduled work under the decide group's name). */
    sweeper(ns: IsolatedTopics, db: IsolatedDatabase, now?: () => number) {
      const running = startScheduled({
        jobs: [claimSweeper({ lifecycleCommands: ns.topics.lifecycleCommands, everyMs: 200, now })],
        group: uniqueName('sweeper-'),
        pool: db.pool,
        logger: logger(),
      });
      cleanups.push(() => running.stop());
      return running;
    },
    cleanup: (fn: () => Promise<unknown>) => void cleanups.push(fn),
  };
}

export const T0 = Date.parse('2026-11-30T08:00:00.000Z');
export const at = (seconds: number) => new Date(T0 + seconds * 1000).toISOString();
export const sha256 = (token: string) => createHash('sha256').update(token).digest('hex');

type CommandFields = Partial<LifecycleCommand> & Pick<LifecycleCommand, 'command' | 'issue_id'>;

/** An agent's command as the API makes it (issued now unless `issued_at`). */
export const agent = (fields: CommandFields): LifecycleCommand => ({
  command_id: randomUUID(),
  origin: 'agent',
  actor: 'agent-1',
  issued_at: at(60),
  ...fields,
});

/** A system command as intake makes it. */
export const system = (fields: CommandFields): LifecycleCommand => ({
  command_id: randomUUID(),
  origin: 'system',
  actor: 'lifecycle-intake',
  issued_at: at(0),
  ...fields,
});

/** open from a group_created: project 1, level error (severity high) unless told. */
export const open = (issueId: number, fields: Partial<LifecycleCommand> = {}) =>
  system({
    command: 'open',
    issue_id: issueId,
    project_id: 1,
    group: {
      short_id: `P-${issueId}`,
      title: `issue ${issueId}`,
      level: 'error',
      primary_fingerprint: `fp-${issueId}`,
      times_seen: 1,
      first_seen: at(0),
      last_seen: at(0),
    },
    ...fields,
  });

/** Commands as the API and intake produce them: keyed by issue id, the command id as message id (unless `messageId`). */
export async function publish(
  ns: IsolatedTopics,
  commands: LifecycleCommand[],
  messageId = (c: LifecycleCommand) => c.command_id,
): Promise<void> {
  const producer = kafka().producer({ idempotent: true });
  await producer.connect();
  try {
    await producer.send({
      topic: ns.topics.lifecycleCommands,
      acks: -1,
      messages: commands.map((c) => ({
        key: String(c.issue_id),
        value: JSON.stringify(c),
        headers: { [HEADER.messageId]: messageId(c) },
      })),
    });
  } finally {
    await producer.disconnect();
  }
}

export interface Outcome {
  command_id: string;
  outcome: 'applied' | 'ignored' | 'rejected';
  reason: string | null;
  detail: string | null;
  allowed_transitions: string[] | null;
  version: number | null;
  issue: { status: string; version: number; claimed_by: string | null } | null;
  decided_at: string;
}

/** Each command's outcome, once all are decided. */
export async function outcomes(
  db: IsolatedDatabase,
  commands: LifecycleCommand[],
  timeoutMs = 30_000,
): Promise<Outcome[]> {
  const ids = commands.map((c) => c.command_id);
  let rows: Outcome[] = [];
  await waitFor(
    `${ids.length} outcomes`,
    async () => {
      rows = (
        await db.pool.query<Outcome>(
          `SELECT command_id::text, outcome, reason, detail, allowed_transitions, version, issue,
                  to_char(decided_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS decided_at
           FROM lifecycle_commands WHERE command_id = ANY($1::uuid[])`,
          [ids],
        )
      ).rows;
      return rows.length === ids.length;
    },
    timeoutMs,
  );
  return ids.map((id) => rows.find((r) => r.command_id === id)!);
}

/** Publish, then each command's outcome. */
export async function run(
  ns: IsolatedTopics,
  db: IsolatedDatabase,
  ...commands: LifecycleCommand[]
) {
  await publish(ns, commands);
  return outcomes(db, commands);
}

export interface IssueView {
  id: number;
  status: string;
  version: number;
  severity: string;
  claimed_by: string | null;
  claim_token_sha256: string | null;
  claim_expires_at: string | null;
  claim_generation: number;
  sla_due_at: string | null;
  resolution: Record<string, unknown> | null;
  close_reason: string | null;
  duplicate_of: number | null;
  canonical_incident_id: number | null;
  times_seen: number;
  group_status: string;
  group_sequence: number;
  hidden: boolean;
  deleted: boolean;
  status_since: string;
}

const ms = (column: string) =>
  `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS ${column}`;

export const issue = async (db: IsolatedDatabase, id: number): Promise<IssueView | undefined> =>
  (
    await db.pool.query<IssueView>(
      `SELECT id::int, status, version, severity, claimed_by, claim_token_sha256, ${ms('claim_expires_at')},
              claim_generation, ${ms('sla_due_at')}, resolution, close_reason, duplicate_of::int,
              canonical_incident_id::int, times_seen::int, group_status, group_sequence::int, hidden,
              deleted_at IS NOT NULL AS deleted, ${ms('status_since')}
       FROM issues WHERE id = $1`,
      [id],
    )
  ).rows[0];

export const history = async (db: IsolatedDatabase, id: number) =>
  (
    await db.pool.query<{
      version: number;
      event_type: string;
      from_status: string | null;
      to_status: string;
      in_previous_state: string | null;
      details: Record<string, unknown>;
    }>(
      `SELECT version, event_type, from_status, to_status, in_previous_state::text, details
       FROM issue_history WHERE issue_id = $1 ORDER BY version`,
      [id],
    )
  ).rows;

/** Registry-framed JSON (5 bytes, then JSON) as the relay publishes it. */
const framed = <T>(value: Buffer | null) => JSON.parse(value!.subarray(5).toString()) as T;

/** Wait until the outbox is published, then every record on a topic. */
async function published<T>(db: IsolatedDatabase, topic: string) {
  await waitFor('the outbox published', async () => {
    const { rows } = await db.pool.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM outbox WHERE published_at IS NULL',
    );
    return rows[0]!.n === 0;
  });
  return (await readAll(topic)).map((r) => ({
    key: r.key,
    headers: r.headers,
    value: framed<T>(r.value),
  }));
}

export const lifecycleEvents = async (ns: IsolatedTopics, db: IsolatedDatabase, issueId?: number) =>
  (await published<LifecycleEvent>(db, ns.topics.lifecycle))
    .filter((r) => issueId === undefined || r.value.issue_id === issueId)
    .sort((a, b) => a.value.issue_id - b.value.issue_id || a.value.version - b.value.version);

export const statusChanges = async (ns: IsolatedTopics, db: IsolatedDatabase, groupId?: number) =>
  (await published<StatusChange>(db, ns.topics.statusChanges)).filter(
    (r) => groupId === undefined || r.value.shoal?.group_id === groupId,
  );
