import {
  combinedConfig,
  connectionEnv,
  env,
  loadConfig,
  orExitOnConfigError,
  z,
  type Env,
} from '@shoal/config';
import { kafkaConnection, registryConnection } from '@shoal/config/connections';
import {
  checkRegistry,
  Codec,
  createRegistry,
  topicNames,
  type MessageTypes,
  type TopicKey,
} from '@shoal/contracts';
import { createPool, migrate, runtimeMigrationsDir, serviceSchema } from '@shoal/db';
import { createLogger, startOpsServer } from '@shoal/observability';
import { Kafka, logLevel } from 'kafkajs';
import { runConsumer, type RuntimeHook } from './consumer.js';
import { RelayThread } from './relay-thread.js';
import type { Handler } from './handler.js';
import type { Lookup } from './lookups.js';
import { startHeartbeat } from './heartbeat.js';
import { assertKnownEntityKinds, failurePolicyFromEnv } from './policy.js';
import { startScheduled, type ScheduledJob } from './scheduled.js';
import type { ServiceRetention } from './retention.js';

export interface ServiceSpec<K extends TopicKey> {
  name: string;
  topics: K[];
  handle: Handler<MessageTypes[K]>;
  lookups?: Lookup<MessageTypes[K]>[];
  messageId?: (value: MessageTypes[K], topicKey: K) => string | undefined;
  /** The service's own migrations folder; applied with the runtime's at start. */
  migrationsDir?: string;
  /** Transactions on a timer (scheduled.ts): one member runs each at a time; stopped with the service. */
  scheduled?: ScheduledJob[];
  /** Retention of the service's own tables, run by the runtime's pruner. */
  retention?: ServiceRetention;
  hook?: (point: RuntimeHook) => void;
}

/**
 * A deployed service's unit of work, unless its environment says otherwise: messages per
 * transaction, and partitions of one fetch applied at once (each in its own transaction). A chunk's
 * cost is mostly round trips, the same for 500 messages as for 2,000, and partitions in parallel
 * overlap them (bench/grouping: ×1.3 and ×1.7 on two cores).
 */
export const SERVICE_DEFAULTS = { maxBatchSize: 2000, partitionConcurrency: 3 } as const;

const serviceEnv = {
  ...connectionEnv,
  SHOAL_TOPIC_NAMESPACE: z.string().default(''),
  SHOAL_CONSUMER_GROUP: z.string().min(1).optional(),
  SHOAL_OPS_PORT: env.port().optional(),
  /** Where /healthz /readyz /metrics listen: loopback by default, `0.0.0.0` in a container. */
  SHOAL_OPS_HOST: z.string().min(1).default('127.0.0.1'),
  SHOAL_MAX_BATCH_SIZE: env.positiveInt().default(SERVICE_DEFAULTS.maxBatchSize),
  SHOAL_SESSION_TIMEOUT_MS: env.positiveInt().default(10_000),
  SHOAL_START_FROM: env.oneOf(['earliest', 'latest']).default('earliest'),
  SHOAL_PARTITION_CONCURRENCY: env.positiveInt().default(SERVICE_DEFAULTS.partitionConcurrency),
  SHOAL_TRANSIENT_ESCALATE_SECONDS: env.positiveInt().default(60),
  SHOAL_PRUNE_INTERVAL_SECONDS: env.positiveInt().default(600),
  SHOAL_HEARTBEAT_SECONDS: env.positiveInt().default(5),
};

/**
 * Every variable the runtime reads for a consumer service at start, parsed: connections, batch and
 * group settings, the failure policy; a per-kind variable must name a kind the service looks up.
 * Throws ConfigError naming each bad variable.
 */
export function serviceConfig<K extends TopicKey>(
  spec: Pick<ServiceSpec<K>, 'lookups'>,
  source: Env = process.env,
) {
  const { own, kafka, registry, failure } = combinedConfig({
    own: () => loadConfig(serviceEnv, source),
    kafka: () => kafkaConnection(source),
    registry: () => registryConnection(source),
    failure: () => {
      const failure = failurePolicyFromEnv(source);
      assertKnownEntityKinds(
        failure,
        (spec.lookups ?? []).map((l) => l.entity),
      );
      return failure;
    },
  });
  return { ...own, kafka, registry, failure };
}

/**
 * A consumer service's whole `main`: configuration from the environment (a bad variable stops the
 * process, named), migrations, the consumer with its outbox relay, its scheduled jobs, its heartbeat, `/healthz` `/readyz` `/metrics`,
 * SIGTERM/SIGINT for a clean stop, and a non-zero exit when a dead-letter limit stops it.
 */
export async function runService<K extends TopicKey>(spec: ServiceSpec<K>): Promise<void> {
  const config = orExitOnConfigError(() => serviceConfig(spec));
  const { failure } = config;
  const logger = createLogger(spec.name);
  const group = config.SHOAL_CONSUMER_GROUP ?? `shoal.${spec.name}`;
  // the service's tables, runtime tables and pgmigrations live in its own schema
  const schema = serviceSchema(spec.name);
  await migrate({
    databaseUrl: config.DATABASE_URL,
    direction: 'up',
    dirs: [runtimeMigrationsDir, ...(spec.migrationsDir ? [spec.migrationsDir] : [])],
    schema,
    log: (message) => logger.info({ schema }, message),
  });
  const jobs = spec.scheduled ?? [];
  // one connection per partition applied at once, one per scheduled job while this member holds
  // it, and room for pruning, the heartbeat and /readyz (the relay thread has a pool of its own)
  const pool = createPool(config.DATABASE_URL, {
    applicationName: spec.name,
    max: Math.max(10, config.SHOAL_PARTITION_CONCURRENCY + 4) + jobs.length,
    schema,
  });
  const kafkaConfig = { ...config.kafka, clientId: spec.name, retry: { retries: 8 } };
  const kafka = new Kafka({ ...kafkaConfig, logLevel: logLevel.WARN });
  const registry = createRegistry(config.registry.url, config.registry.auth);
  const topics = topicNames(config.SHOAL_TOPIC_NAMESPACE);
  const running = await runConsumer({
    group,
    topics: spec.topics,
    topicNames: topics,
    handle: spec.handle,
    lookups: spec.lookups,
    messageId: spec.messageId,
    pool,
    kafka,
    codec: new Codec(registry, topics),
    failure,
    logger,
    maxBatchSize: config.SHOAL_MAX_BATCH_SIZE,
    startFrom: config.SHOAL_START_FROM,
    concurrency: config.SHOAL_PARTITION_CONCURRENCY,
    transientEscalateMs: config.SHOAL_TRANSIENT_ESCALATE_SECONDS * 1000,
    retention: spec.retention,
    pruneEveryMs: config.SHOAL_PRUNE_INTERVAL_SECONDS * 1000,
    consumerConfig: {
      sessionTimeout: config.SHOAL_SESSION_TIMEOUT_MS,
      heartbeatInterval: Math.max(100, Math.floor(config.SHOAL_SESSION_TIMEOUT_MS / 6)),
    },
    relay: new RelayThread(
      {
        name: spec.name,
        databaseUrl: config.DATABASE_URL,
        schema,
        kafka: kafkaConfig,
        registry: config.registry,
        topicNamespace: config.SHOAL_TOPIC_NAMESPACE,
      },
      { logger, hook: spec.hook },
    ),
    hook: spec.hook,
  });
  const scheduled = startScheduled({
    jobs,
    group,
    pool,
    logger,
    notify: () => running.relay.notify(),
    hook: spec.hook,
  });
  // what /readyz answers and each heartbeat records (heartbeat.ts)
  const checks = {
    // partitions stuck on a transient failure past the deadline, or halted on an offset mismatch
    consumer: running.check,
    postgres: async () => void (await pool.query('SELECT 1')),
    kafka: async () => {
      const admin = kafka.admin();
      await admin.connect();
      await admin.describeCluster().finally(() => admin.disconnect());
    },
    registry: () => checkRegistry(config.registry),
  };
  const heartbeat = startHeartbeat({
    pool,
    group,
    checks,
    logger,
    everyMs: config.SHOAL_HEARTBEAT_SECONDS * 1000,
  });
  const ops =
    config.SHOAL_OPS_PORT === undefined
      ? undefined
      : await startOpsServer(config.SHOAL_OPS_PORT, checks, config.SHOAL_OPS_HOST);
  logger.info(
    { group, topics: spec.topics.map((k) => topics[k]), opsPort: ops?.port },
    'consumer running',
  );

  const shutdown = (signal: string) => {
    logger.info({ signal }, 'stopping');
    void running.stop();
  };
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
  try {
    await running.done;
    process.exitCode = 0;
  } catch (error) {
    logger.fatal({ err: error }, `stopped: ${(error as Error).message}`);
    process.exitCode = 1;
  } finally {
    await scheduled.stop();
    await heartbeat.stop();
    await ops?.close();
    await pool.end();
  }
  // kafkajs may keep timers alive after disconnect; the consumer is done, so is the process
  process.exit(process.exitCode);
}
