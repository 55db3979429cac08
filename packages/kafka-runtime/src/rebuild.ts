import { loadConfig, orExitOnConfigError, z, type Env } from '@shoal/config';
import { Codec, createRegistry, topicNames, type TopicKey } from '@shoal/contracts';
import { checkedSchema, createPool, migrate, runtimeMigrationsDir } from '@shoal/db';
import { createLogger } from '@shoal/observability';
import { Kafka, logLevel } from 'kafkajs';
import { runConsumer } from './consumer.js';
import { RebuildGate } from './rebuild-gate.js';
import type { ServiceSpec } from './service.js';
import { serviceConfig } from './service.js';

/**
 * A service's main in rebuild mode (`shoal rebuild <service>` starts it as a child process with the
 * variables below): its migrations into a shadow schema, then its own handler, lookups and failure
 * policy over its input topics from the earliest offsets, as a fresh Kafka consumer group whose
 * rows in PostgreSQL are keyed by the live group's name (so ledger entries, parked keys and event
 * ids come out as the live service's did), applying each partition up to exactly the live group's
 * offset and in record-timestamp order across partitions (rebuild-gate.ts). Nothing is published:
 * the relay is off, so events and dead letters stay in the shadow's outbox; no scheduled job, no
 * heartbeat, no ops server. It exits 0 once every partition reached its stop, 1 on a failure.
 *
 *   SHOAL_REBUILD_SCHEMA       the shadow schema (created and migrated here)
 *   SHOAL_REBUILD_KAFKA_GROUP  the fresh Kafka group id
 *   SHOAL_REBUILD_STOP_AT      JSON {"<topic>": {"<partition>": <next offset>}}: where the live group
 *                              stands; a partition of the service's topics not named has a stop of 0
 *   SHOAL_CONSUMER_GROUP       the live group's name (default shoal.<service>), as for the service
 */

const stopAtShape = z.record(
  z.string(),
  z.record(z.string().regex(/^\d+$/), z.number().int().min(0)),
);

const rebuildEnv = {
  SHOAL_REBUILD_SCHEMA: z.string().refine(
    (s) => {
      try {
        return checkedSchema(s) === s;
      } catch {
        return false;
      }
    },
    { error: 'expected a schema name: lower-case letters, digits and _' },
  ),
  SHOAL_REBUILD_KAFKA_GROUP: z.string().min(1),
  SHOAL_REBUILD_STOP_AT: z
    .string()
    .transform((s, ctx) => {
      try {
        return JSON.parse(s) as unknown;
      } catch {
        ctx.addIssue({
          code: 'custom',
          message: 'expected JSON {"<topic>": {"<partition>": <offset>}}',
        });
        return z.NEVER;
      }
    })
    .pipe(stopAtShape),
};

export type RebuildMode = z.infer<z.ZodObject<typeof rebuildEnv>>;

/** The rebuild's variables when SHOAL_REBUILD_SCHEMA is set, else undefined (a normal start). */
export function rebuildModeFromEnv(source: Env = process.env): RebuildMode | undefined {
  if (!source.SHOAL_REBUILD_SCHEMA) return undefined;
  return orExitOnConfigError(() => loadConfig(rebuildEnv, source));
}

export async function runRebuild<K extends TopicKey>(
  spec: ServiceSpec<K>,
  mode: RebuildMode,
): Promise<void> {
  const config = orExitOnConfigError(() => serviceConfig(spec));
  const logger = createLogger(`${spec.name}-rebuild`);
  const group = config.SHOAL_CONSUMER_GROUP ?? `shoal.${spec.name}`;
  const schema = mode.SHOAL_REBUILD_SCHEMA;
  const topics = topicNames(config.SHOAL_TOPIC_NAMESPACE);
  const kafka = new Kafka({
    ...config.kafka,
    clientId: `${spec.name}-rebuild`,
    logLevel: logLevel.WARN,
    retry: { retries: 8 },
  });
  const admin = kafka.admin();
  await admin.connect();
  const stops: ConstructorParameters<typeof RebuildGate>[0] = [];
  try {
    for (const key of spec.topics) {
      const topic = topics[key];
      for (const { partition, low } of await admin.fetchTopicOffsets(topic))
        stops.push({
          topic,
          partition,
          stop: mode.SHOAL_REBUILD_STOP_AT[topic]?.[String(partition)] ?? 0,
          low: Number(low),
        });
    }
  } finally {
    await admin.disconnect();
  }
  const gate = new RebuildGate(stops);
  await migrate({
    databaseUrl: config.DATABASE_URL,
    direction: 'up',
    dirs: [runtimeMigrationsDir, ...(spec.migrationsDir ? [spec.migrationsDir] : [])],
    schema,
    log: (message) => logger.info({ schema }, message),
  });
  // every partition is applied at once: one waiting for another's earlier record must not hold
  // the only slot (rebuild-gate.ts)
  const concurrency = stops.length;
  const pool = createPool(config.DATABASE_URL, {
    applicationName: `${spec.name}-rebuild`,
    max: concurrency + 4,
    schema,
  });
  const registry = createRegistry(config.registry.url, config.registry.auth);
  const running = await runConsumer({
    group,
    kafkaGroupId: mode.SHOAL_REBUILD_KAFKA_GROUP,
    relay: false,
    gate,
    topics: spec.topics,
    topicNames: topics,
    handle: spec.handle,
    lookups: spec.lookups,
    messageId: spec.messageId,
    pool,
    kafka,
    codec: new Codec(registry, topics),
    failure: config.failure,
    logger,
    maxBatchSize: config.SHOAL_MAX_BATCH_SIZE,
    startFrom: 'earliest',
    concurrency,
    transientEscalateMs: config.SHOAL_TRANSIENT_ESCALATE_SECONDS * 1000,
    retention: spec.retention,
    pruneEveryMs: config.SHOAL_PRUNE_INTERVAL_SECONDS * 1000,
    hook: spec.hook,
  });
  logger.info({ group, schema, stops: gate.stops() }, 'rebuild running');
  const shutdown = (signal: string) => {
    logger.info({ signal }, 'stopping');
    void running.stop();
  };
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
  let reached = false;
  void gate.finished.then(() => {
    reached = true;
    return running.stop();
  });
  try {
    await running.done;
    if (!reached) throw new Error('stopped by a signal before the stop offsets');
    logger.info({ schema }, 'rebuild reached the stop offsets');
    process.exitCode = 0;
  } catch (error) {
    logger.fatal({ err: error }, `rebuild stopped: ${(error as Error).message}`);
    process.exitCode = 1;
  } finally {
    await pool.end();
  }
  process.exit(process.exitCode);
}
