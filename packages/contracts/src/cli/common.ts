import { connectionEnv, loadConfig, z } from '@shoal/config';
import { topicKeys, topicNames, type TopicKey } from '../topics.js';
export { formatTable, parseCli, runCli } from '@shoal/config/cli';

const cliEnv = {
  KAFKA_BROKERS: connectionEnv.KAFKA_BROKERS,
  SCHEMA_REGISTRY_URL: connectionEnv.SCHEMA_REGISTRY_URL,
  /** Prefix for every topic name (isolated test runs, several pipelines on one cluster). */
  SHOAL_TOPIC_NAMESPACE: z
    .string()
    .regex(/^[A-Za-z0-9._-]*$/, { error: 'expected letters, digits, ".", "_" or "-"' })
    .default(''),
};

export function cliConfig() {
  const config = loadConfig(cliEnv);
  return { ...config, topics: topicNames(config.SHOAL_TOPIC_NAMESPACE) };
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
