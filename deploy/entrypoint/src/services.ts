import { combinedConfig, type Env } from '@shoal/config';
import { dedupConfigFromEnv, dedupLookups, dedupMigrationsDir } from '@shoal/dedup/service';
import { groupingConfig, groupingLookups, groupingMigrationsDir } from '@shoal/grouping/service';
import { gatewayConfig } from '@shoal/ingest-gateway/config';
import { serviceConfig, type Lookup } from '@shoal/kafka-runtime';
import {
  lifecycleLookups,
  lifecycleMigrationsDir,
  lifecycleServiceConfig,
} from '@shoal/lifecycle/service';
import { regressionConfig, regressionMigrationsDir } from '@shoal/regression/service';
import { serviceMains, serviceNames, type ServiceName } from './mains.js';

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
  config: (source: Env) => {
    opsHost: string;
    opsPort: number | undefined;
    /** A consumer that also serves HTTP (lifecycle's agent API): where, beside the ops port. */
    http?: { host: string; port: number };
  };
  /** Its own migrations, applied with the runtime's into its schema by `setup` (the Job) before it starts. */
  migrationsDir?: string;
}

/**
 * A consumer's `config`: its own parser beside the runtime's `serviceConfig` with its lookups (a
 * per-kind policy must name a kind it looks up), every bad variable of both named at once.
 */
const consumerConfig =
  (own: (source: Env) => unknown, lookups: Lookup<never>[] = []): ServiceEntry['config'] =>
  (source) => {
    const { runtime } = combinedConfig({
      own: () => own(source),
      runtime: () => serviceConfig({ lookups }, source),
    });
    return { opsHost: runtime.SHOAL_OPS_HOST, opsPort: runtime.SHOAL_OPS_PORT };
  };

const entries = {
  'ingest-gateway': {
    roles: ['http'],
    main: serviceMains['ingest-gateway'],
    config: (source) => {
      const config = gatewayConfig(source);
      return { opsHost: config.SHOAL_GATEWAY_HOST, opsPort: config.SHOAL_GATEWAY_PORT };
    },
  },
  grouping: {
    roles: ['consumer'],
    main: serviceMains.grouping,
    config: consumerConfig(groupingConfig, groupingLookups),
    migrationsDir: groupingMigrationsDir,
  },
  regression: {
    roles: ['consumer'],
    main: serviceMains.regression,
    config: consumerConfig(regressionConfig),
    migrationsDir: regressionMigrationsDir,
  },
  dedup: {
    roles: ['consumer'],
    main: serviceMains.dedup,
    config: consumerConfig(dedupConfigFromEnv, dedupLookups),
    migrationsDir: dedupMigrationsDir,
  },
  lifecycle: {
    roles: ['consumer', 'http'],
    main: serviceMains.lifecycle,
    config: (source) => {
      const { runtime, own } = combinedConfig({
        runtime: () => serviceConfig({ lookups: lifecycleLookups }, source),
        own: () => lifecycleServiceConfig(source),
      });
      return {
        opsHost: runtime.SHOAL_OPS_HOST,
        opsPort: runtime.SHOAL_OPS_PORT,
        http: { host: own.api.SHOAL_API_HOST, port: own.api.SHOAL_API_PORT },
      };
    },
    migrationsDir: lifecycleMigrationsDir,
  },
} satisfies Record<ServiceName, ServiceEntry>;

// (`satisfies`: a service here that mains.ts lacks, or one there missing here, is a type error)
export const services: Record<string, ServiceEntry> = entries;

export { serviceNames };
