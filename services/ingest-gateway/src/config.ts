import { combinedConfig, connectionEnv, env, loadConfig, z, type Env } from '@shoal/config';
import { kafkaConnection, registryConnection } from '@shoal/config/connections';

/** Every variable the gateway reads at start (a bad or missing one stops it, named). */
export const gatewayEnv = {
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
};

/** Every variable the gateway reads, Kafka's TLS/SASL and the registry's auth included; throws ConfigError. */
export function gatewayConfig(source: Env = process.env) {
  const { own, kafka, registry } = combinedConfig({
    own: () => loadConfig(gatewayEnv, source),
    kafka: () => kafkaConnection(source),
    registry: () => registryConnection(source),
  });
  return { ...own, kafka, registry };
}
