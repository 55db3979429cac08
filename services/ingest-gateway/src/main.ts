import { connectionEnv, env, loadConfigOrExit, z } from '@shoal/config';
import { createLogger } from '@shoal/observability';
import { createProducer } from '@shoal/producer';
import { Kafka, logLevel } from 'kafkajs';
import { buildGateway } from './app.js';

const config = loadConfigOrExit({
  KAFKA_BROKERS: connectionEnv.KAFKA_BROKERS,
  SCHEMA_REGISTRY_URL: connectionEnv.SCHEMA_REGISTRY_URL,
  SHOAL_TOPIC_NAMESPACE: z.string().default(''),
  SHOAL_GATEWAY_PORT: env.port().default(8090),
  SHOAL_GATEWAY_HOST: z.string().default('127.0.0.1'),
  /** `token` (scope ingest) or `token:scope+scope`, comma-separated */
  SHOAL_INGEST_TOKENS: z
    .string({
      error: 'expected a comma-separated list of tokens, each `token` or `token:scope+scope`',
    })
    .min(1, { error: 'expected at least one token' }),
  SHOAL_GATEWAY_MAX_ITEMS: env.positiveInt().default(1000),
  SHOAL_GATEWAY_BODY_LIMIT_BYTES: env.positiveInt().default(5 * 1024 * 1024),
});

const tokens = new Map(
  config.SHOAL_INGEST_TOKENS.split(',').map((entry) => {
    const [token, scopes] = entry.trim().split(':');
    return [token!, new Set(scopes ? scopes.split('+') : ['ingest'])] as const;
  }),
);
const logger = createLogger('ingest-gateway');
const producer = createProducer({
  brokers: config.KAFKA_BROKERS,
  registryUrl: config.SCHEMA_REGISTRY_URL,
  namespace: config.SHOAL_TOPIC_NAMESPACE,
  retry: { retries: 3 },
});
const admin = new Kafka({
  brokers: config.KAFKA_BROKERS,
  clientId: 'ingest-gateway-ready',
  logLevel: logLevel.NOTHING,
  retry: { retries: 0 },
}).admin();
const app = await buildGateway({
  producer,
  tokens,
  maxItems: config.SHOAL_GATEWAY_MAX_ITEMS,
  bodyLimitBytes: config.SHOAL_GATEWAY_BODY_LIMIT_BYTES,
  logger,
  checks: {
    kafka: async () => {
      await admin.connect();
      await admin.describeCluster();
    },
    registry: async () => {
      const response = await fetch(`${config.SCHEMA_REGISTRY_URL}/subjects`, {
        signal: AbortSignal.timeout(2000),
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
    },
  },
});
await app.listen({ port: config.SHOAL_GATEWAY_PORT, host: config.SHOAL_GATEWAY_HOST });

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    void app
      .close()
      .then(() => producer.close())
      .then(() => admin.disconnect())
      .finally(() => process.exit(0));
  });
}
