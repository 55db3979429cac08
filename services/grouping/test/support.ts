import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Codec, createRegistry, payloadMessageId, type TopicKey } from '@shoal/contracts';
import { runtimeMigrationsDir, serviceSchema, type Pool } from '@shoal/db';
import {
  failurePolicyFromEnv,
  runConsumer,
  startScheduled,
  type RunningConsumer,
} from '@shoal/kafka-runtime';
import { createLogger } from '@shoal/observability';
import { connections, uniqueName } from '@shoal/testing';
import { Kafka, logLevel } from 'kafkajs';
import { groupActivityJob } from '../src/activity.js';
import { groupingHandler } from '../src/handler.js';
import type { IssueTypePolicies } from '../src/issue-types.js';
import { lookups } from '../src/lookups.js';
import { groupingMigrationsDir } from '../src/service.js';

export const migrationDirs = [runtimeMigrationsDir, groupingMigrationsDir];

/** A database as main.ts makes it: grouping's tables in its schema, which the pool's search_path names. */
export const groupingDatabase = { dirs: migrationDirs, schema: serviceSchema('grouping') };

export const groupingMain = path.join(
  path.dirname(fileURLToPath(import.meta.url)),
  '..',
  'src',
  'main.ts',
);

/**
 * The grouping service in this process (what main.ts runs: the consumer and the group_activity
 * flush, every `activityEveryMs`, default 300 ms), on a test's topics and database.
 */
export async function startGrouping(
  topics: Record<TopicKey, string>,
  pool: Pool,
  group: string,
  options: {
    env?: Record<string, string>;
    maxBatchSize?: number;
    issueTypes?: IssueTypePolicies;
    activityEveryMs?: number;
    /** Partitions applied at once (runConsumer's `concurrency`). */
    concurrency?: number;
  } = {},
): Promise<RunningConsumer> {
  const logger = createLogger('grouping-test', process.env.TEST_LOG_LEVEL ?? 'silent');
  const consumer = await runConsumer({
    group,
    topics: ['occurrences', 'statusChanges', 'entityChanges', 'groupingCommands'],
    topicNames: topics,
    handle: groupingHandler({
      groupEvents: topics.groupEvents,
      issueTypes: options.issueTypes ?? new Map(),
    }),
    lookups,
    messageId: payloadMessageId,
    pool,
    kafka: new Kafka({
      brokers: connections().KAFKA_BROKERS,
      clientId: uniqueName('grouping-'),
      logLevel: logLevel.NOTHING,
    }),
    codec: new Codec(createRegistry(connections().SCHEMA_REGISTRY_URL), topics),
    failure: failurePolicyFromEnv(options.env ?? {}),
    logger,
    consumerConfig: { sessionTimeout: 6000, heartbeatInterval: 500, maxWaitTimeInMs: 100 },
    maxBatchSize: options.maxBatchSize,
    concurrency: options.concurrency,
  });
  const scheduled = startScheduled({
    jobs: [groupActivityJob(topics.groupEvents, options.activityEveryMs ?? 300)],
    group,
    pool,
    logger,
    notify: () => consumer.relay.notify(),
  });
  return {
    ...consumer,
    stop: async () => {
      await scheduled.stop();
      await consumer.stop();
    },
  };
}
