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
import { checkRegistry, Codec, createRegistry, topicNames, type TopicKey } from '@shoal/contracts';
import { createPool, migrate, runtimeMigrationsDir, serviceSchema, type Pool } from '@shoal/db';
import {
  createLogger,
  reportFatal,
  startErrorTracker,
  startOpsServer,
  type Logger,
} from '@shoal/observability';
import { Kafka, logLevel } from 'kafkajs';
import type { RuntimeHook } from './consumer.js';
import { RelayThread } from './relay-thread.js';
import type { Lookup } from './lookups.js';
import {
  consumerGroup,
  startGroups,
  type ConsumerGroup,
  type ConsumerGroupSpec,
} from './groups.js';
import { startHeartbeat } from './heartbeat.js';
import { rebuildModeFromEnv, runRebuild } from './rebuild.js';
import { assertKnownEntityKinds, failurePolicyFromEnv } from './policy.js';
import { startScheduled, type ScheduledJob } from './scheduled.js';
import type { ServiceRetention } from './retention.js';

export interface ServiceSpec<K extends TopicKey> extends ConsumerGroupSpec<K>, ProcessSpec {}

/** A service of several consumer groups in one process (groups.ts), e.g. lifecycle's intake and decide. */
export interface ServiceGroupsSpec extends ProcessSpec {
  /** Each its own Kafka group, `<SHOAL_CONSUMER_GROUP or shoal.<name>>.<group name>`. */
  groups: ConsumerGroup[];
}

/** What a service's process has once, whatever its groups. */
interface ProcessSpec {
  name: string;
  /** The service's own migrations folder; applied with the runtime's at start. */
  migrationsDir?: string;
  /** Transactions on a timer (scheduled.ts): one member runs each at a time; stopped with the service. */
  scheduled?: ScheduledJob[];
  /** Retention of the service's own tables, run by the runtime's pruner. */
  retention?: ServiceRetention;
  hook?: (point: RuntimeHook) => void;
  /**
   * Something the process serves beside its consumers (lifecycle's agent API), started once they
   * run, on the service's pool, and stopped before them.
   */
  alongside?: Alongside;
}

export interface Alongside {
  /** Connections of the pool it may hold at once (added to the pool's size). */
  connections: number;
  start(deps: {
    pool: Pool;
    kafka: Kafka;
    codec: Codec;
    topics: Record<TopicKey, string>;
    logger: Logger;
  }): Promise<{ stop(): Promise<void> }>;
}

/**
 * A deployed service's unit of work, unless its environment says otherwise: messages per
 * transaction, and partitions of one fetch applied at once (each in its own transaction). A chunk's
 * cost is mostly round trips, the same for 500 messages as for 2,000, and partitions in parallel
 * overlap them (bench/grouping: ×1.3 and ×1.7 on two cores). 4,000 rather than 2,000: grouping at
 * 1,000 fingerprints went from 39–47 % of its in-run ceiling to 50–59 % (four pairs), for about
 * 100 MiB more at the peak of a 600,000-occurrence run.
 */
export const SERVICE_DEFAULTS = { maxBatchSize: 4000, partitionConcurrency: 3 } as const;

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
  spec: Pick<ServiceSpec<K>, 'lookups'> | Pick<ServiceGroupsSpec, 'groups'>,
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
        lookupsOf(spec).map((l) => l.entity),
      );
      return failure;
    },
  });
  return { ...own, kafka, registry, failure };
}

const lookupsOf = (spec: { lookups?: Lookup<never>[] } | { groups: ConsumerGroup[] }) =>
  'groups' in spec ? spec.groups.flatMap((g) => g.lookups) : (spec.lookups ?? []);

/**
 * A consumer service's whole `main`: configuration from the environment (a bad variable stops the
 * process, named), migrations, the consumer with its outbox relay, its scheduled jobs, its heartbeat, `/healthz` `/readyz` `/metrics`,
 * SIGTERM/SIGINT for a clean stop, and a non-zero exit when a dead-letter limit stops it. With
 * `groups`, each group is a consumer of its own in the process (groups.ts): `/readyz` is ready when
 * every group is, each group beats its own heartbeat row, SIGTERM lets every group's batch commit.
 */
export async function runService<K extends TopicKey>(
  spec: ServiceSpec<K> | ServiceGroupsSpec,
): Promise<void> {
  // `shoal rebuild` starts the service's main with SHOAL_REBUILD_* set (rebuild.ts)
  const rebuild = rebuildModeFromEnv(process.env, 'groups' in spec);
  if (rebuild) return runRebuild(spec, rebuild);
  const config = orExitOnConfigError(() => serviceConfig(spec));
  const { failure } = config;
  const logger = createLogger(spec.name);
  await startErrorTracker(spec.name, logger);
  const group = config.SHOAL_CONSUMER_GROUP ?? `shoal.${spec.name}`;
  const groups = 'groups' in spec ? spec.groups : [consumerGroup('', spec)];
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
  // it, and room for pruning, the heartbeat and /readyz (each group's relay thread has a pool of its
  // own); what runs alongside brings its own count
  const pool = createPool(config.DATABASE_URL, {
    applicationName: spec.name,
    max:
      Math.max(10, groups.length * config.SHOAL_PARTITION_CONCURRENCY + 4) +
      jobs.length +
      (spec.alongside?.connections ?? 0),
    schema,
  });
  const kafkaConfig = { ...config.kafka, clientId: spec.name, retry: { retries: 8 } };
  const kafka = new Kafka({ ...kafkaConfig, logLevel: logLevel.WARN });
  const registry = createRegistry(config.registry.url, config.registry.auth);
  const topics = topicNames(config.SHOAL_TOPIC_NAMESPACE);
  const codec = new Codec(registry, topics);
  const running = await startGroups(group, groups, (group, _spec, i) => ({
    group,
    topicNames: topics,
    pool,
    kafka,
    codec,
    failure,
    logger,
    maxBatchSize: config.SHOAL_MAX_BATCH_SIZE,
    startFrom: config.SHOAL_START_FROM,
    concurrency: config.SHOAL_PARTITION_CONCURRENCY,
    transientEscalateMs: config.SHOAL_TRANSIENT_ESCALATE_SECONDS * 1000,
    // the service's tables are pruned once, by its first group
    retention: i === 0 ? spec.retention : undefined,
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
  }));
  // scheduled events are keyed by the first group's id (a one-group service: its group, as before)
  const first = running.groups[0]!;
  const scheduled = startScheduled({
    jobs,
    group: first.group,
    pool,
    logger,
    notify: () => first.running.relay.notify(),
    hook: spec.hook,
  });
  // what /readyz answers and each heartbeat records (heartbeat.ts)
  const shared = {
    postgres: async () => void (await pool.query('SELECT 1')),
    kafka: async () => {
      const admin = kafka.admin();
      await admin.connect();
      await admin.describeCluster().finally(() => admin.disconnect());
    },
    registry: () => checkRegistry(config.registry),
  };
  // partitions stuck on a transient failure past the deadline, or halted on an offset mismatch
  const checks = { ...running.checks, ...shared };
  const heartbeats = running.groups.map(({ group, running }) =>
    startHeartbeat({
      pool,
      group,
      checks: { consumer: running.check, ...shared },
      logger,
      everyMs: config.SHOAL_HEARTBEAT_SECONDS * 1000,
    }),
  );
  const alongside = await spec.alongside?.start({ pool, kafka, codec, topics, logger });
  let stoppingAlongside: Promise<void> | undefined;
  const stopAlongside = () => (stoppingAlongside ??= alongside?.stop() ?? Promise.resolve());
  const ops =
    config.SHOAL_OPS_PORT === undefined
      ? undefined
      : await startOpsServer(config.SHOAL_OPS_PORT, checks, config.SHOAL_OPS_HOST);
  for (const { group, spec } of running.groups)
    logger.info(
      { group, topics: spec.topics.map((k) => topics[k]), opsPort: ops?.port },
      'consumer running',
    );

  const shutdown = (signal: string) => {
    logger.info({ signal }, 'stopping');
    // what runs alongside (an HTTP API awaiting the consumers' outcomes) stops first
    void stopAlongside().finally(() => running.stop());
  };
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
  try {
    await running.done;
    process.exitCode = 0;
  } catch (error) {
    logger.fatal({ err: error }, `stopped: ${(error as Error).message}`);
    process.exitCode = 1;
    await reportFatal(error);
  } finally {
    await stopAlongside();
    await scheduled.stop();
    await Promise.all(heartbeats.map((h) => h.stop()));
    await ops?.close();
    await pool.end();
  }
  // kafkajs may keep timers alive after disconnect; the consumer is done, so is the process
  process.exit(process.exitCode);
}
