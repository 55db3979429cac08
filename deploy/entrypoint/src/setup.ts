import { combinedConfig, connectionEnv, loadConfig, z, type Env } from '@shoal/config';
import { kafkaConnection, registryConnection } from '@shoal/config/connections';
import {
  createRegistry,
  createTopics,
  parsePartitions,
  planTopics,
  registerSchemas,
  topicNames,
  withAdmin,
  type RegisteredSchema,
  type TopicResult,
} from '@shoal/contracts';
import { migrate, runtimeMigrationsDir, serviceSchema } from '@shoal/db';
import { services } from './services.js';

/**
 * What must exist before the services start, each step idempotent: every service's migrations
 * (the runtime's and its own, into its schema), every topic and its DLQ, every schema registered
 * BACKWARD-compatible. `npm start` runs it before starting the services; the image runs it as
 * `setup` (the Kubernetes Job, compose's `setup` service).
 */
export const setupEnv = {
  ...connectionEnv,
  SHOAL_TOPIC_NAMESPACE: z.string().default(''),
  /** `occurrences=12,groupEvents=6`: partitions of topics created now (existing ones are kept). */
  SHOAL_TOPIC_PARTITIONS: z
    .string()
    .default('')
    .transform((spec, ctx) => {
      try {
        return parsePartitions(spec);
      } catch (error) {
        ctx.addIssue({ code: 'custom', message: (error as Error).message });
        return z.NEVER;
      }
    }),
};

/** Every variable `setup` reads, parsed; throws ConfigError naming each bad one. */
export function setupConfig(source: Env = process.env) {
  const { own, kafka, registry } = combinedConfig({
    own: () => loadConfig(setupEnv, source),
    kafka: () => kafkaConnection(source),
    registry: () => registryConnection(source),
  });
  return { ...own, kafka, registry };
}

export interface SetupResult {
  migrations: { schema: string; applied: string[] }[];
  topics: TopicResult[];
  schemas: RegisteredSchema[];
}

export async function setup(
  source: Env = process.env,
  log: (step: string) => void = () => undefined,
): Promise<SetupResult> {
  const config = setupConfig(source);
  log('migrations');
  const migrations: SetupResult['migrations'] = [];
  for (const [name, entry] of Object.entries(services)) {
    if (!entry.migrationsDir) continue;
    const schema = serviceSchema(name);
    const applied = await migrate({
      databaseUrl: config.DATABASE_URL,
      direction: 'up',
      dirs: [runtimeMigrationsDir, entry.migrationsDir],
      schema,
    });
    migrations.push({ schema, applied: applied.map((m) => m.name) });
  }
  log('topics');
  const names = topicNames(config.SHOAL_TOPIC_NAMESPACE);
  const topics = await withAdmin(config.kafka, (admin) =>
    createTopics(admin, planTopics(names, config.SHOAL_TOPIC_PARTITIONS)),
  );
  log('schemas');
  const schemas = await registerSchemas(
    createRegistry(config.registry.url, config.registry.auth),
    names,
  );
  return { migrations, topics, schemas };
}
