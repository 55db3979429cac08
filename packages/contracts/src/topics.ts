import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The topics of the design's table. The wire's source of truth is `schemas/<topic>.schema.json`. */
export const topicCatalog = {
  occurrences: {
    topic: 'shoal.occurrences.v1',
    partitions: 6,
    key: 'project_id:primary fingerprint',
    type: 'Occurrence',
  },
  statusChanges: {
    topic: 'shoal.status-changes.v1',
    partitions: 6,
    key: 'project_id:primary fingerprint',
    type: 'StatusChange',
  },
  groupEvents: {
    topic: 'shoal.group-events.v1',
    partitions: 6,
    key: 'group id',
    type: 'GroupEvent',
  },
  lifecycleCommands: {
    topic: 'shoal.lifecycle-commands.v1',
    partitions: 3,
    key: 'issue id',
    type: 'LifecycleCommand',
  },
  lifecycle: {
    topic: 'shoal.lifecycle.v1',
    partitions: 3,
    key: 'issue id',
    type: 'LifecycleEvent',
  },
  entityChanges: {
    topic: 'shoal.entity-changes.v1',
    partitions: 3,
    key: 'entity id',
    type: 'EntityChange',
  },
  incidents: {
    topic: 'shoal.incidents.v1',
    partitions: 3,
    key: 'incident id',
    type: 'IncidentEvent',
  },
  dedupCommands: {
    topic: 'shoal.dedup-commands.v1',
    partitions: 3,
    key: 'incident id',
    type: 'DedupCommand',
  },
  regressionCommands: {
    topic: 'shoal.regression-commands.v1',
    partitions: 3,
    key: 'group id',
    type: 'RegressionCommand',
  },
  groupingCommands: {
    topic: 'shoal.grouping-commands.v1',
    partitions: 3,
    key: 'orphan kind',
    type: 'GroupingCommand',
  },
} as const;

export type TopicKey = keyof typeof topicCatalog;
export const topicKeys = Object.keys(topicCatalog) as TopicKey[];

export const DLQ_SUFFIX = '.dlq';
export const dlqTopic = (topic: string) => `${topic}${DLQ_SUFFIX}`;

/**
 * Topic names under an optional namespace prefix (tests give each file its own, e.g. `t1a2b.`),
 * so isolated runs share one broker and one registry without seeing each other.
 */
export function topicNames(namespace = ''): Record<TopicKey, string> {
  return Object.fromEntries(
    topicKeys.map((k) => [k, `${namespace}${topicCatalog[k].topic}`]),
  ) as Record<TopicKey, string>;
}

/** TopicNameStrategy, as Confluent's serializers use: the value schema of topic T is subject `T-value`. */
export const valueSubject = (topic: string) => `${topic}-value`;

export const schemasDir = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../../schemas',
);

export type JsonSchemaDocument = Record<string, unknown> & { title: string; $id: string };

export function schemaFile(key: TopicKey): string {
  return path.join(schemasDir, `${topicCatalog[key].topic}.schema.json`);
}

const loaded = new Map<TopicKey, JsonSchemaDocument>();
export function loadSchema(key: TopicKey): JsonSchemaDocument {
  let schema = loaded.get(key);
  if (!schema) {
    schema = JSON.parse(fs.readFileSync(schemaFile(key), 'utf8')) as JsonSchemaDocument;
    loaded.set(key, schema);
  }
  return schema;
}

/** Which catalog entry a (possibly namespaced) topic name is. */
export function topicKeyOf(topic: string): TopicKey | undefined {
  return topicKeys.find((k) => topic.endsWith(topicCatalog[k].topic));
}
