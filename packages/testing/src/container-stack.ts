import { KafkaContainer } from '@testcontainers/kafka';
import { PostgreSqlContainer } from '@testcontainers/postgresql';
import { GenericContainer, getContainerRuntimeClient, Wait } from 'testcontainers';

/**
 * The second test stack (SHOAL_TEST_STACK=testcontainers): Kafka (KRaft), PostgreSQL and the
 * registry in containers started by testcontainers, for machines with a Docker engine; the native
 * stack stays the default. Without an engine that answers, it fails at once with a message saying
 * so, never hangs and never falls back to the native stack.
 */

export const stackVariable = 'SHOAL_TEST_STACK';
const stacks = ['native', 'testcontainers'] as const;
export type TestStack = (typeof stacks)[number];

export function selectedStack(env: NodeJS.ProcessEnv = process.env): TestStack {
  const value = env[stackVariable] || 'native';
  if (!(stacks as readonly string[]).includes(value))
    throw new Error(`${stackVariable}: expected one of ${stacks.join(', ')} (got "${value}")`);
  return value as TestStack;
}

/** Same versions as the native stack and docker-compose.yml (Confluent's image: testcontainers' Kafka module needs it). */
export const containerImages = {
  kafka: 'confluentinc/cp-kafka:7.9.0',
  postgres: 'postgres:15',
  registry: 'apicurio/apicurio-registry:3.3.3',
};

const engineTimeoutMs = 15_000;

/** Resolves when a Docker engine answers; rejects naming why within 15 s when none does. */
async function dockerEngine(): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      getContainerRuntimeClient(),
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no answer within ${engineTimeoutMs / 1000} s`)),
          engineTimeoutMs,
        );
      }),
    ]);
  } catch (error) {
    throw new Error(
      `${stackVariable}=testcontainers, but no Docker engine answers (${(error as Error).message}). ` +
        `Start one (or point DOCKER_HOST at one), or unset ${stackVariable} to use the native stack.`,
    );
  } finally {
    clearTimeout(timer);
  }
}

export interface ContainerStack {
  /** KAFKA_BROKERS, SCHEMA_REGISTRY_URL, DATABASE_URL for the tests. */
  env: Record<'KAFKA_BROKERS' | 'SCHEMA_REGISTRY_URL' | 'DATABASE_URL', string>;
  stop(): Promise<void>;
}

export async function startContainerStack(): Promise<ContainerStack> {
  await dockerEngine();
  const [kafka, postgres, registry] = await Promise.all([
    new KafkaContainer(containerImages.kafka)
      .withKraft()
      .withEnvironment({ KAFKA_AUTO_CREATE_TOPICS_ENABLE: 'false' })
      .start(),
    new PostgreSqlContainer(containerImages.postgres)
      .withDatabase('shoal')
      .withUsername('postgres')
      .withPassword('postgres')
      .start(),
    new GenericContainer(containerImages.registry)
      .withExposedPorts(8080)
      .withWaitStrategy(Wait.forHttp('/apis/ccompat/v7/subjects', 8080))
      .start(),
  ]);
  return {
    env: {
      KAFKA_BROKERS: `${kafka.getHost()}:${kafka.getMappedPort(9093)}`,
      SCHEMA_REGISTRY_URL: `http://${registry.getHost()}:${registry.getMappedPort(8080)}/apis/ccompat/v7`,
      DATABASE_URL: postgres.getConnectionUri(),
    },
    stop: async () => {
      await Promise.all([kafka.stop(), postgres.stop(), registry.stop()]);
    },
  };
}
