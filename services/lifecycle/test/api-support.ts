import type { Pool } from '@shoal/db';
import type { RunningConsumer } from '@shoal/kafka-runtime';
import { createLogger } from '@shoal/observability';
import { createProducer, type ShoalProducer, type ShoalProducerOptions } from '@shoal/producer';
import {
  connections,
  freePort,
  isolatedDatabase,
  isolatedTopics,
  uniqueName,
  waitFor,
  withAdmin,
  type IsolatedDatabase,
  type IsolatedTopics,
} from '@shoal/testing';
import { agentApiConfig } from '../src/api/config.js';
import { API_PRODUCER_RETRY, buildAgentApi, type AgentApi } from '../src/api/server.js';
import { DecidedHere } from '../src/decided-here.js';
import { lifecycleDatabase, open, startDecide as startDecideIn } from './decide-support.js';

export { lifecycleDatabase };

/**
 * The agent API against the real stack: lifecycle's database and topics (decide-support.ts, as the
 * decide tests have them), a producer of its own.
 */

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

/** A producer to the stack's broker, retrying as the API's own does. */
export function testProducer(topics: IsolatedTopics): ShoalProducer {
  return producerFor(topics, connections().KAFKA_BROKERS, API_PRODUCER_RETRY);
}

/** A producer to a port nobody listens on, giving up quickly: the broker that never acknowledges. */
export async function unreachableProducer(topics: IsolatedTopics): Promise<ShoalProducer> {
  return producerFor(topics, [`127.0.0.1:${await freePort()}`], {
    retries: 1,
    initialRetryTime: 100,
    maxRetryTime: 200,
  });
}

function producerFor(
  topics: IsolatedTopics,
  brokers: string[],
  retry: ShoalProducerOptions['retry'],
): ShoalProducer {
  return createProducer({
    brokers,
    registryUrl: connections().SCHEMA_REGISTRY_URL,
    namespace: topics.namespace,
    lingerMs: 5,
    retry,
  });
}

/** What every API test file runs on: topics, a database and a producer of its own. */
export async function openApiTestBase(): Promise<{
  topics: IsolatedTopics;
  db: IsolatedDatabase;
  producer: ShoalProducer;
}> {
  const [topics, db] = await Promise.all([isolatedTopics(), isolatedDatabase(lifecycleDatabase)]);
  return { topics, db, producer: testProducer(topics) };
}

/** Stops and drops whatever of a file's API, decide consumer, producer, topics and database exists. */
export async function closeApiTest(made: {
  api?: AgentApi;
  decide?: RunningConsumer;
  producer?: ShoalProducer;
  topics?: IsolatedTopics;
  db?: IsolatedDatabase;
}): Promise<void> {
  await made.api?.close();
  await made.decide?.stop();
  await made.producer?.close();
  await Promise.all([made.topics?.drop(), made.db?.drop()]);
}

/**
 * What the test's decide consumer hands the test's APIs (`startDecide`, `testApi`), as lifecycle's
 * process does: replies are answered from it once the NOTIFY comes.
 */
export const decidedHere = new DecidedHere();

export async function testApi(
  db: { pool: Pool },
  producer: Pick<ShoalProducer, 'publishLifecycleCommand'>,
  env: Record<string, string> = {},
  /** null: the API reads every outcome back, as one in another process than decide would. */
  decided: DecidedHere | null = decidedHere,
): Promise<AgentApi> {
  return buildAgentApi({
    config: agentApiConfig({ SHOAL_API_TOKENS: Object.values(TOKENS).join(','), ...env }),
    pool: db.pool,
    producer,
    logger: createLogger('lifecycle-api-test', 'warn'),
    decidedHere: decided ?? undefined,
  });
}

/** Records on the topic now (every partition's high watermark, summed). */
export const recordsOn = async (topic: string) =>
  (await withAdmin((admin) => admin.fetchTopicOffsets(topic))).reduce(
    (n, p) => n + Number(p.high),
    0,
  );

/** Opens issues through the commands topic (the decide consumer applies them) and waits for their rows. */
export async function openIssues(
  producer: ShoalProducer,
  pool: Pool,
  ids: number[],
  projectId = 1,
) {
  const now = new Date().toISOString();
  await Promise.all(
    ids.map((id) =>
      producer.publishLifecycleCommand(open(id, { project_id: projectId, issued_at: now })),
    ),
  );
  await waitFor(`issues ${ids.join(', ')} opened`, async () => {
    const { rows } = await pool.query('SELECT count(*)::int AS n FROM issues WHERE id = ANY($1)', [
      ids,
    ]);
    return rows[0].n === ids.length;
  });
}

/** Lifecycle's decide consumer in this process, on a test's topics and database. */
export const startDecide = (topics: IsolatedTopics, db: IsolatedDatabase) =>
  startDecideIn(topics, db, uniqueName('lifecycle-decide-'), {}, {}, decidedHere);
