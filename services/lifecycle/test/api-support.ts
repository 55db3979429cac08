import { randomUUID } from 'node:crypto';
import { Codec, createRegistry } from '@shoal/contracts';
import { migrationsDirBeside, runtimeMigrationsDir, serviceSchema, type Pool } from '@shoal/db';
import { failurePolicyFromEnv, runConsumer, type RunningConsumer } from '@shoal/kafka-runtime';
import { createLogger } from '@shoal/observability';
import { createProducer, type LifecycleCommand, type ShoalProducer } from '@shoal/producer';
import { connections, uniqueName, waitFor, withAdmin, type IsolatedTopics } from '@shoal/testing';
import { Kafka, logLevel } from 'kafkajs';
import { agentApiConfig } from '../src/api/config.js';
import { buildAgentApi, type AgentApi } from '../src/api/server.js';
import { decideHandler } from '../src/decide/handler.js';
import { decideLookups, decideMessageId } from '../src/decide/lookups.js';
import { DEFAULT_SLA_MS } from '../src/transitions.js';

/** The agent API against the real stack: lifecycle's database and topics, a producer of its own. */

export const lifecycleDatabase = {
  dirs: [
    runtimeMigrationsDir,
    migrationsDirBeside(new URL('../src/main.ts', import.meta.url).href),
  ],
  schema: serviceSchema('lifecycle'),
};

/** One token per scope, and two agents that may do everything but admin. */
export const TOKENS = {
  read: 'reader:tok-read-0001:read',
  claim: 'claimer:tok-claim-0001:claim',
  write: 'writer:tok-write-0001:write',
  admin: 'boss:tok-admin-0001:admin',
  a: 'agent-a:tok-agent-a:read+claim+write',
  b: 'agent-b:tok-agent-b:read+claim+write',
};
export const bearer = (entry: string) => ({ authorization: `Bearer ${entry.split(':')[1]}` });

export function testProducer(
  topics: IsolatedTopics,
  brokers = connections().KAFKA_BROKERS,
): ShoalProducer {
  return createProducer({
    brokers,
    registryUrl: connections().SCHEMA_REGISTRY_URL,
    namespace: topics.namespace,
    lingerMs: 5,
    retry: { retries: 1, initialRetryTime: 100, maxRetryTime: 200 },
  });
}

export async function testApi(
  db: { pool: Pool },
  producer: Pick<ShoalProducer, 'publishLifecycleCommand'>,
  env: Record<string, string> = {},
): Promise<AgentApi> {
  return buildAgentApi({
    config: agentApiConfig({ SHOAL_API_TOKENS: Object.values(TOKENS).join(','), ...env }),
    pool: db.pool,
    producer,
    logger: createLogger('lifecycle-api-test', 'warn'),
  });
}

/** Records on the topic now (every partition's high watermark, summed). */
export const recordsOn = async (topic: string) =>
  (await withAdmin((admin) => admin.fetchTopicOffsets(topic))).reduce(
    (n, p) => n + Number(p.high),
    0,
  );

/** An `open` system command, as lifecycle's intake makes from a group_created. */
export function openCommand(issueId: number, projectId = 1, level = 'error'): LifecycleCommand {
  const at = new Date().toISOString();
  return {
    command_id: randomUUID(),
    command: 'open',
    issue_id: issueId,
    actor: 'lifecycle-intake',
    origin: 'system',
    issued_at: at,
    occurred_at: at,
    project_id: projectId,
    group: {
      title: `Error ${issueId}`,
      short_id: `P-${issueId}`,
      level: level as 'error',
      primary_fingerprint: `fp-${issueId}`,
      first_seen: at,
      last_seen: at,
      times_seen: 1,
    },
  };
}

/** Opens issues through the commands topic (the decide consumer applies them) and waits for their rows. */
export async function openIssues(
  producer: ShoalProducer,
  pool: Pool,
  ids: number[],
  projectId = 1,
) {
  await Promise.all(ids.map((id) => producer.publishLifecycleCommand(openCommand(id, projectId))));
  await waitFor(`issues ${ids.join(', ')} opened`, async () => {
    const { rows } = await pool.query('SELECT count(*)::int AS n FROM issues WHERE id = ANY($1)', [
      ids,
    ]);
    return rows[0].n === ids.length;
  });
}

/** Lifecycle's decide consumer in this process (what main.ts runs), on a test's topics and database. */
export function startDecide(topics: IsolatedTopics, pool: Pool): Promise<RunningConsumer> {
  return runConsumer({
    group: uniqueName('lifecycle-decide-'),
    topics: ['lifecycleCommands'],
    topicNames: topics.topics,
    handle: decideHandler({
      topics: { lifecycle: topics.topics.lifecycle, statusChanges: topics.topics.statusChanges },
      slaMs: DEFAULT_SLA_MS,
    }),
    lookups: decideLookups,
    messageId: decideMessageId,
    pool,
    kafka: new Kafka({
      brokers: connections().KAFKA_BROKERS,
      clientId: uniqueName('decide-'),
      logLevel: logLevel.NOTHING,
    }),
    codec: new Codec(createRegistry(connections().SCHEMA_REGISTRY_URL), topics.topics),
    failure: failurePolicyFromEnv({}),
    logger: createLogger('lifecycle-decide-test', process.env.TEST_LOG_LEVEL ?? 'silent'),
    consumerConfig: { sessionTimeout: 6000, heartbeatInterval: 500, maxWaitTimeInMs: 20 },
  });
}
