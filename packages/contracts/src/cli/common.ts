import { connectionEnv, loadConfig, z } from '@shoal/config';
import { topicNames } from '../topics.js';
export { formatTable, parseCli, runCli } from '@shoal/config/cli';
export { parsePartitions } from '../admin.js';

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
