import { SchemaType } from '@kafkajs/confluent-schema-registry';
import { connections, runEntryPoint, uniqueName, withAdmin } from '@shoal/testing';
import { afterAll, describe, expect, it } from 'vitest';
import {
  COMPATIBILITY,
  createRegistry,
  dlqTopic,
  loadSchema,
  planTopics,
  topicKeys,
  topicNames,
  valueSubject,
} from '../src/index.js';

const namespace = `${uniqueName('cli')}.`;
const env = { SHOAL_TOPIC_NAMESPACE: namespace };
const topics = topicNames(namespace);

afterAll(() =>
  withAdmin((admin) => admin.deleteTopics({ topics: planTopics(topics).map((p) => p.topic) })),
);

describe('npm run topics', () => {
  it('creates every topic and its DLQ, then is a no-op', async () => {
    const first = runEntryPoint(
      'packages/contracts/src/cli/topics.ts',
      ['create', '--partitions', 'groupEvents=4'],
      env,
    );
    expect(first.stderr).toBe('');
    expect(first.status).toBe(0);
    expect(first.stdout.match(/ created/g)).toHaveLength(topicKeys.length * 2);
    const metadata = await withAdmin((admin) =>
      admin.fetchTopicMetadata({
        topics: [topics.occurrences, topics.groupEvents, dlqTopic(topics.occurrences)],
      }),
    );
    expect(new Map(metadata.topics.map((t) => [t.name, t.partitions.length]))).toEqual(
      new Map([
        [topics.occurrences, 6],
        [topics.groupEvents, 4],
        [dlqTopic(topics.occurrences), 1],
      ]),
    );

    const second = runEntryPoint('packages/contracts/src/cli/topics.ts', ['create'], env);
    expect(second.status).toBe(0);
    expect(second.stdout).not.toContain(' created');
    expect(second.stdout.match(/ exists/g)).toHaveLength(topicKeys.length * 2);
    expect(second.stdout).toContain('wanted 6; partitions are never changed here');
  });

  it('names a bad --partitions entry and exits non-zero', () => {
    const result = runEntryPoint(
      'packages/contracts/src/cli/topics.ts',
      ['create', '--partitions', 'occurences=3'],
      env,
    );
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('"occurences=3" is not <topic>=<count>');
  });

  it('names a bad environment variable', () => {
    const result = runEntryPoint('packages/contracts/src/cli/topics.ts', ['create'], {
      KAFKA_BROKERS: 'nohost',
    });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(
      'KAFKA_BROKERS: expected a comma-separated list of host:port (got "nohost")',
    );
  });
});

describe('npm run schemas', () => {
  it('registers, then check finds nothing to report', () => {
    const register = runEntryPoint('packages/contracts/src/cli/schemas.ts', ['register'], env);
    expect(register.status).toBe(0);
    expect(register.stdout).toContain(valueSubject(topics.occurrences));
    const check = runEntryPoint('packages/contracts/src/cli/schemas.ts', ['check'], env);
    expect(check.status).toBe(0);
    expect(check.stdout.match(/unchanged/g)).toHaveLength(topicKeys.length);
  });

  it('check and register refuse a breaking change before it is registered', async () => {
    const other = `${uniqueName('cli')}.`;
    const registry = createRegistry(connections().SCHEMA_REGISTRY_URL);
    // the registry already holds a version whose data the local schema cannot read
    const wider = structuredClone(loadSchema('statusChanges')) as unknown as {
      properties: { new_status: { enum: number[] } };
    };
    wider.properties.new_status.enum.push(3);
    const subject = valueSubject(topicNames(other).statusChanges);
    await registry.register(
      { type: SchemaType.JSON, schema: JSON.stringify(wider) },
      { subject, compatibility: COMPATIBILITY },
    );

    const check = runEntryPoint('packages/contracts/src/cli/schemas.ts', ['check'], {
      SHOAL_TOPIC_NAMESPACE: other,
    });
    expect(check.status).toBe(1);
    expect(check.stdout).toMatch(new RegExp(`${subject.replace(/\./g, '\\.')}\\s+breaking`));
    expect(check.stderr).toContain(`breaking change in ${subject}`);

    const register = runEntryPoint('packages/contracts/src/cli/schemas.ts', ['register'], {
      SHOAL_TOPIC_NAMESPACE: other,
    });
    expect(register.status).toBe(1);
    expect(register.stderr).toContain(`refusing to register: ${subject}`);
    expect(await registry.getLatestSchemaId(subject)).toBe(
      await registry.getRegistryIdBySchema(subject, {
        type: SchemaType.JSON,
        schema: JSON.stringify(wider),
      }),
    );
  });

  it('prints usage for --help and for an unknown command', () => {
    expect(runEntryPoint('packages/contracts/src/cli/schemas.ts', ['--help']).stdout).toContain(
      'Usage: npm run schemas',
    );
    const bad = runEntryPoint('packages/contracts/src/cli/schemas.ts', ['publish']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('Usage: npm run schemas');
  });
});
