import type { KafkaConnection } from '@shoal/config/connections';
import { Kafka, logLevel, type Admin, type ITopicConfig } from 'kafkajs';
import { dlqTopic, topicCatalog, topicKeys, type TopicKey } from './topics.js';

/** Source topics keep everything: read models are rebuilt by replaying them from the beginning. */
const SOURCE_TOPIC_CONFIG = [{ name: 'retention.ms', value: '-1' }];
/** Dead letters are kept 14 days; the processed-id ledger is never pruned sooner than this. */
export const DLQ_RETENTION_MS = 14 * 24 * 60 * 60 * 1000;
const DLQ_TOPIC_CONFIG = [{ name: 'retention.ms', value: String(DLQ_RETENTION_MS) }];

export interface TopicPlan {
  topic: string;
  partitions: number;
  dlq: boolean;
}

export function planTopics(
  topics: Record<TopicKey, string>,
  partitions: Partial<Record<TopicKey, number>> = {},
): TopicPlan[] {
  return topicKeys.flatMap((key) => [
    { topic: topics[key], partitions: partitions[key] ?? topicCatalog[key].partitions, dlq: false },
    { topic: dlqTopic(topics[key]), partitions: 1, dlq: true },
  ]);
}

/** `occurrences=12,groupEvents=6` → partitions per topic; names the bad entry when it is not one. */
export function parsePartitions(spec: string): Partial<Record<TopicKey, number>> {
  const result: Partial<Record<TopicKey, number>> = {};
  for (const entry of spec
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const [key, value] = entry.split('=');
    const n = Number(value);
    if (!topicKeys.includes(key as TopicKey) || !Number.isInteger(n) || n < 1) {
      throw new Error(
        `--partitions: "${entry}" is not <topic>=<count> with a topic among ${topicKeys.join(', ')}`,
      );
    }
    result[key as TopicKey] = n;
  }
  return result;
}

export interface TopicResult extends TopicPlan {
  state: 'created' | 'exists';
  actualPartitions: number;
}

/** Creates what is missing; an existing topic is left as it is (its partition count is reported). */
export async function createTopics(admin: Admin, plan: TopicPlan[]): Promise<TopicResult[]> {
  const existing = new Set(await admin.listTopics());
  const missing: ITopicConfig[] = plan
    .filter((p) => !existing.has(p.topic))
    .map((p) => ({
      topic: p.topic,
      numPartitions: p.partitions,
      // -1: the cluster's default.replication.factor (1 on the local stack, 3 on a production
      // cluster), so a topic is replicated wherever its brokers say it should be
      replicationFactor: -1,
      configEntries: p.dlq ? DLQ_TOPIC_CONFIG : SOURCE_TOPIC_CONFIG,
    }));
  const metadata = await createWithLeaders(
    admin,
    missing,
    plan.map((p) => p.topic),
  );
  const partitionsOf = new Map(metadata.topics.map((t) => [t.name, t.partitions.length]));
  return plan.map((p) => ({
    ...p,
    state: existing.has(p.topic) ? 'exists' : 'created',
    actualPartitions: partitionsOf.get(p.topic) ?? 0,
  }));
}

/**
 * Creates `configs` (one that exists already is left as it is) and returns the metadata of
 * `describe` (by default the topics created) once every partition has a leader that serves it.
 */
export async function createWithLeaders(
  admin: Admin,
  configs: ITopicConfig[],
  describe: string[] = configs.map((c) => c.topic),
) {
  if (configs.length) {
    try {
      await admin.createTopics({ topics: configs, waitForLeaders: true });
    } catch (error) {
      // a concurrent creator won the race, or the broker does not know yet what it just created
      // (kafkajs' wait for leaders gives up on a retriable UNKNOWN_TOPIC_OR_PARTITION): the
      // metadata below, asked until every partition has a leader, tells the truth
      const { type, retriable } = error as { type?: string; retriable?: boolean };
      if (type !== 'TOPIC_ALREADY_EXISTS' && retriable !== true) throw error;
    }
  }
  return metadataOf(admin, describe);
}

/**
 * The metadata of `topics` once each has a partition and every partition a leader that answers for
 * it, asked again every 200 ms for up to 10 s while the broker answers with a retriable error or a
 * partition without a leader: right after it created a topic it may still say it does not host it
 * (UNKNOWN_TOPIC_OR_PARTITION), and kafkajs does not retry a metadata request for that. A leader in
 * the metadata is not yet one that serves: a broker publishes the new metadata before its
 * partitions take the lead, and answers NOT_LEADER_OR_FOLLOWER in between (seconds, on a loaded
 * box), so each partition is asked its offsets too.
 */
async function metadataOf(admin: Admin, topics: string[]) {
  for (let attempt = 1; ; attempt++) {
    const last = attempt >= 50;
    try {
      const metadata = await admin.fetchTopicMetadata({ topics });
      const led = metadata.topics.every(
        (t) => t.partitions.length > 0 && t.partitions.every((p) => p.leader >= 0),
      );
      if (led) await Promise.all(metadata.topics.map((t) => admin.fetchTopicOffsets(t.name)));
      if (led || last) return metadata;
    } catch (error) {
      if ((error as { retriable?: boolean }).retriable !== true || last) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** A connected admin client for the length of `fn`: on `brokers`, or a connection with TLS and SASL. */
export async function withAdmin<T>(
  kafka: string[] | KafkaConnection,
  fn: (admin: Admin) => Promise<T>,
): Promise<T> {
  const connection = Array.isArray(kafka) ? { brokers: kafka } : kafka;
  const admin = new Kafka({
    ...connection,
    clientId: 'shoal-admin',
    logLevel: logLevel.NOTHING,
  }).admin();
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.disconnect();
  }
}
