import type { Check } from '@shoal/observability';
import { Kafka, logLevel } from 'kafkajs';

export interface ReadinessChecks {
  checks: Record<string, Check>;
  close(): Promise<void>;
}

/** `/readyz`'s checks: the brokers answer a metadata request; the registry answers over HTTP. */
export function readinessChecks(brokers: string[], registryUrl: string): ReadinessChecks {
  const admin = new Kafka({
    brokers,
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
      registry: async () => {
        const response = await fetch(`${registryUrl}/subjects`, {
          signal: AbortSignal.timeout(2000),
        });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
      },
    },
    close: () => admin.disconnect(),
  };
}
