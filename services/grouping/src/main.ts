import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { topicNames } from '@shoal/contracts';
import { runService } from '@shoal/kafka-runtime';
import { groupingHandler } from './handler.js';
import { lookups } from './lookups.js';

await runService({
  name: 'grouping',
  topics: ['occurrences', 'statusChanges', 'entityChanges'],
  handle: groupingHandler({
    groupEvents: topicNames(process.env.SHOAL_TOPIC_NAMESPACE ?? '').groupEvents,
  }),
  lookups,
  messageId: (value, topic) =>
    topic === 'occurrences' && 'id' in value ? `occurrence:${value.id}` : undefined,
  migrationsDir: path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'migrations'),
});
