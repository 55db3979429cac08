import { ConfigError, loadConfig, orExitOnConfigError, z, type Env } from '@shoal/config';
import { Codec, createRegistry, topicNames, type TopicKey } from '@shoal/contracts';
import { checkedSchema, createPool, migrate, runtimeMigrationsDir } from '@shoal/db';
import { createLogger } from '@shoal/observability';
import { Kafka, logLevel } from 'kafkajs';
import { consumerGroup, consumerGroupId, startGroups } from './groups.js';
import { RebuildGate } from './rebuild-gate.js';
import type { ServiceGroupsSpec, ServiceSpec } from './service.js';
import { serviceConfig } from './service.js';

/**
 * A service's main in rebuild mode (`shoal rebuild <service>` starts it as a child process with the
 * variables below): its migrations into a shadow schema, then its own handler, lookups and failure
 * policy over its input topics from the earliest offsets, as a fresh Kafka consumer group whose
 * rows in PostgreSQL are keyed by the live group's name (so ledger entries, parked keys and event
 * ids come out as the live service's did), applying each partition up to exactly the live group's
 * offset and in record-timestamp order across partitions (rebuild-gate.ts). Nothing is published:
 * the relay is off, so events and dead letters stay in the shadow's outbox; no scheduled job, no
 * heartbeat, no ops server, nothing alongside (lifecycle's API). It exits 0 once every partition
 * reached its stop, 1 on a failure.
 *
 * A service of several groups (groups.ts, lifecycle's decide and intake) rebuilds every group into
 * the one shadow schema at once, each as a fresh Kafka group of its own
 * (`<SHOAL_REBUILD_KAFKA_GROUP>.<group name>`), up to its own live group's offsets, with a gate of
 * its own: the groups share no input, only the schema (one reads what another published on the
 * topic, never the shadow's outbox), so one group's records never wait for another's.
 *
 *   SHOAL_REBUILD_SCHEMA       the shadow schema (created and migrated here)
 *   SHOAL_REBUILD_KAFKA_GROUP  the fresh Kafka group id (of several groups: the prefix of theirs)
 *   SHOAL_REBUILD_STOP_AT      JSON {"<topic>": {"<partition>": <next offset>}}: where the live group
 *                              stands; a partition of the service's topics not named has a stop of 0.
 *                              Of several groups: {"<live group id>": {"<topic>": …}}, every group named
 *   SHOAL_CONSUMER_GROUP       the live group's name (default shoal.<service>), as for the service
 */

const stopAtShape = z.record(
  z.string(),
  z.record(z.string().regex(/^\d+$/), z.number().int().min(0)),
);

/** SHOAL_REBUILD_STOP_AT's JSON, checked against `shape`. */
const stopAtJson = <S extends z.ZodType>(shape: S, expected: string) =>
  z
    .string()
    .transform((s, ctx) => {
      try {
        return JSON.parse(s) as unknown;
      } catch {
        ctx.addIssue({ code: 'custom', message: `expected JSON ${expected}` });
        return z.NEVER;
      }
    })
    .pipe(shape);

const schemaName = z.string().refine(
  (s) => {
    try {
      return checkedSchema(s) === s;
    } catch {
      return false;
    }
  },
  { error: 'expected a schema name: lower-case letters, digits and _' },
);

const rebuildEnv = {
  SHOAL_REBUILD_SCHEMA: schemaName,
  SHOAL_REBUILD_KAFKA_GROUP: z.string().min(1),
  SHOAL_REBUILD_STOP_AT: stopAtJson(stopAtShape, '{"<topic>": {"<partition>": <offset>}}'),
};

const groupsRebuildEnv = {
  ...rebuildEnv,
  SHOAL_REBUILD_STOP_AT: stopAtJson(
    z.record(z.string(), stopAtShape),
    '{"<group>": {"<topic>": {"<partition>": <offset>}}}',
  ),
};

export type StopAt = z.infer<typeof stopAtShape>;

/** A rebuild's variables: the stop offsets of the one group, or per group of a service of several. */
export type RebuildMode = Omit<z.infer<z.ZodObject<typeof rebuildEnv>>, 'SHOAL_REBUILD_STOP_AT'> &
  (
    | { SHOAL_REBUILD_STOP_AT: StopAt }
    | { perGroup: true; SHOAL_REBUILD_STOP_AT: Record<string, StopAt> }
  );

/**
 * The rebuild's variables when SHOAL_REBUILD_SCHEMA is set, else undefined (a normal start);
 * `perGroup` for a service of several groups (the stop offsets per group).
 */
export function rebuildModeFromEnv(
  source: Env = process.env,
  perGroup = false,
): RebuildMode | undefined {
  if (!source.SHOAL_REBUILD_SCHEMA) return undefined;
  return orExitOnConfigError(() =>
    perGroup
      ? { perGroup: true as const, ...loadConfig(groupsRebuildEnv, source) }
      : loadConfig(rebuildEnv, source),
  );
}

export async function runRebuild<K extends TopicKey>(
  spec: ServiceSpec<K> | ServiceGroupsSpec,
  mode: RebuildMode,
): Promise<void> {
  const config = orExitOnConfigError(() => serviceConfig(spec));
  const logger = createLogger(`${spec.name}-rebuild`);
  const base = config.SHOAL_CONSUMER_GROUP ?? `shoal.${spec.name}`;
  const groups = 'groups' in spec ? spec.groups : [consumerGroup('', spec)];
  const schema = mode.SHOAL_REBUILD_SCHEMA;
  const topics = topicNames(config.SHOAL_TOPIC_NAMESPACE);
  const stopAtOf = (group: string): StopAt => {
    if (!('perGroup' in mode)) return mode.SHOAL_REBUILD_STOP_AT;
    const stopAt = mode.SHOAL_REBUILD_STOP_AT[group];
    if (!stopAt)
      throw new ConfigError([
        {
          variable: 'SHOAL_REBUILD_STOP_AT',
          expected: `the stop offsets of every group: ${group} is not named`,
          got: JSON.stringify(Object.keys(mode.SHOAL_REBUILD_STOP_AT)),
        },
      ]);
    return stopAt;
  };
  const stopsOf = orExitOnConfigError(() => groups.map((g) => stopAtOf(consumerGroupId(base, g))));
  const kafka = new Kafka({
    ...config.kafka,
    clientId: `${spec.name}-rebuild`,
    logLevel: logLevel.WARN,
    retry: { retries: 8 },
  });
  const admin = kafka.admin();
  await admin.connect();
  type Stops = ConstructorParameters<typeof RebuildGate>[0];
  const stops: Stops[] = [];
  try {
    for (const [i, g] of groups.entries()) {
      const own: Stops = [];
      for (const key of g.topics) {
        const topic = topics[key];
        for (const { partition, low } of await admin.fetchTopicOffsets(topic))
          own.push({
            topic,
            partition,
            stop: stopsOf[i]![topic]?.[String(partition)] ?? 0,
            low: Number(low),
          });
      }
      stops.push(own);
    }
  } finally {
    await admin.disconnect();
  }
  const gates = stops.map((own) => new RebuildGate(own));
  await migrate({
    databaseUrl: config.DATABASE_URL,
    direction: 'up',
    dirs: [runtimeMigrationsDir, ...(spec.migrationsDir ? [spec.migrationsDir] : [])],
    schema,
    log: (message) => logger.info({ schema }, message),
  });
  // every partition is applied at once: one waiting for another's earlier record must not hold
  // the only slot (rebuild-gate.ts)
  const pool = createPool(config.DATABASE_URL, {
    applicationName: `${spec.name}-rebuild`,
    max: stops.flat().length + 4,
    schema,
  });
  const registry = createRegistry(config.registry.url, config.registry.auth);
  const codec = new Codec(registry, topics);
  const running = await startGroups(base, groups, (group, g, i) => ({
    group,
    kafkaGroupId:
      g.name === ''
        ? mode.SHOAL_REBUILD_KAFKA_GROUP
        : `${mode.SHOAL_REBUILD_KAFKA_GROUP}.${g.name}`,
    relay: false,
    gate: gates[i],
    topicNames: topics,
    pool,
    kafka,
    codec,
    failure: config.failure,
    logger,
    maxBatchSize: config.SHOAL_MAX_BATCH_SIZE,
    startFrom: 'earliest',
    concurrency: stops[i]!.length,
    transientEscalateMs: config.SHOAL_TRANSIENT_ESCALATE_SECONDS * 1000,
    // the service's tables are pruned once, by its first group (as runService does)
    retention: i === 0 ? spec.retention : undefined,
    pruneEveryMs: config.SHOAL_PRUNE_INTERVAL_SECONDS * 1000,
    hook: spec.hook,
  }));
  for (const [i, { group }] of running.groups.entries())
    logger.info({ group, schema, stops: gates[i]!.stops() }, 'rebuild running');
  const shutdown = (signal: string) => {
    logger.info({ signal }, 'stopping');
    void running.stop();
  };
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
  let reached = false;
  // a group that reached its stops idles until every other one has
  void Promise.all(gates.map((g) => g.finished)).then(() => {
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
