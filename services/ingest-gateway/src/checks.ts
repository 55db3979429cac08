import type { KafkaConnection, RegistryConnection } from '@shoal/config/connections';
import { checkRegistry } from '@shoal/contracts';
import type { Check } from '@shoal/observability';
import { Kafka, logLevel } from 'kafkajs';

export interface ReadinessChecks {
  checks: Record<string, Check>;
  close(): Promise<void>;
}

/** `/readyz`'s checks: the brokers answer a metadata request; the registry answers over HTTP. */
export function readinessChecks(
  kafka: KafkaConnection,
  registry: RegistryConnection,
): ReadinessChecks {
  const admin = new Kafka({
    ...kafka,
    clientId: 'ingest-gateway-ready',
    logLevel: logLevel.NOTHING,
    retry: { retries: 0 },
  }).admin();
  return {
    checks: {
      kafka: async () => {
        await admin.connect();
        await admin.describeCluster();
      },
      registry: () => checkRegistry(registry),
    },
    close: () => admin.disconnect(),
  };
}
