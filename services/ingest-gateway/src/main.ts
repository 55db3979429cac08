import { orExitOnConfigError } from '@shoal/config';
import { createLogger, startErrorTracker } from '@shoal/observability';
import { createProducer } from '@shoal/producer';
import { buildGateway } from './app.js';
import { readinessChecks } from './checks.js';
import { gatewayConfig } from './config.js';

const config = orExitOnConfigError(() => gatewayConfig());

const tokens = new Map(
  config.SHOAL_INGEST_TOKENS.split(',').map((entry) => {
    const [token, scopes] = entry.trim().split(':');
    return [token!, new Set(scopes ? scopes.split('+') : ['ingest'])] as const;
  }),
);
const logger = createLogger('ingest-gateway');
await startErrorTracker('ingest-gateway', logger);
const producer = createProducer({
  brokers: config.kafka.brokers,
  security: config.kafka,
  registryUrl: config.registry.url,
  registryAuth: config.registry.auth,
  namespace: config.SHOAL_TOPIC_NAMESPACE,
  retry: { retries: 3 },
});
const readiness = readinessChecks(config.kafka, config.registry);
const app = await buildGateway({
  producer,
  tokens,
  maxItems: config.SHOAL_GATEWAY_MAX_ITEMS,
  bodyLimitBytes: config.SHOAL_GATEWAY_BODY_LIMIT_BYTES,
  logger,
  checks: readiness.checks,
});
await app.listen({ port: config.SHOAL_GATEWAY_PORT, host: config.SHOAL_GATEWAY_HOST });

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    void app
      .close()
      .then(() => producer.close())
      .then(() => readiness.close())
      .finally(() => process.exit(0));
  });
}
