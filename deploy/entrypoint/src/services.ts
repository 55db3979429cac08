import { combinedConfig, type Env } from '@shoal/config';
import { groupingConfig, groupingLookups, groupingMigrationsDir } from '@shoal/grouping/service';
import { gatewayConfig } from '@shoal/ingest-gateway/config';
import { serviceConfig } from '@shoal/kafka-runtime';

/**
 * Every service the image runs, by the name its first argument gives (the same name as its folder
 * under services/). Adding a service is one entry here; the manifests' test fails until it has a
 * Deployment, and reads `config` to check that Deployment's variables and probe port.
 */
export interface ServiceEntry {
  /** `consumer`: a Kafka consumer group (a PodDisruptionBudget); `http`: serves requests (a Service). */
  roles: ('consumer' | 'http')[];
  /** Imports the service's main module, whose top level starts it (configuration, SIGTERM, exit code are its own). */
  main: () => Promise<unknown>;
  /**
   * Parses every variable the service reads at start, as it does (throws ConfigError naming each
   * bad one), and says where its `/healthz`, `/readyz` and `/metrics` answer (port undefined: nowhere).
   */
  config: (source: Env) => { opsHost: string; opsPort: number | undefined };
  /** Its own migrations, applied with the runtime's into its schema by `setup` (the Job) before it starts. */
  migrationsDir?: string;
}

export const services: Record<string, ServiceEntry> = {
  'ingest-gateway': {
    roles: ['http'],
    main: () => import('@shoal/ingest-gateway/main'),
    config: (source) => {
      const config = gatewayConfig(source);
      return { opsHost: config.SHOAL_GATEWAY_HOST, opsPort: config.SHOAL_GATEWAY_PORT };
    },
  },
  grouping: {
    roles: ['consumer'],
    main: () => import('@shoal/grouping/main'),
    config: (source) => {
      const { runtime } = combinedConfig({
        own: () => groupingConfig(source),
        runtime: () => serviceConfig({ lookups: groupingLookups }, source),
      });
      return { opsHost: runtime.SHOAL_OPS_HOST, opsPort: runtime.SHOAL_OPS_PORT };
    },
    migrationsDir: groupingMigrationsDir,
  },
};

export const serviceNames = Object.keys(services);
