import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { topicNames } from '@shoal/contracts';
import { consumerGroup, runService } from '../../src/index.js';
import { counterHandler, projectLookup } from './handler.js';

/**
 * The counter service as a process of two consumer groups (groups.ts): `count` counts occurrences
 * and emits a group event each, `echo` reads those group events back and records them in the
 * ledger only (nothing else to keep): a pipeline inside one process, one schema, one ops port.
 */
const groupEvents = topicNames(process.env.SHOAL_TOPIC_NAMESPACE ?? '').groupEvents;
await runService({
  name: 'counter',
  groups: [
    consumerGroup('count', {
      topics: ['occurrences'],
      handle: counterHandler(groupEvents),
      lookups: [projectLookup],
      messageId: (occurrence) => `occurrence:${occurrence.id}`,
    }),
    consumerGroup('echo', { topics: ['groupEvents'], handle: async () => undefined }),
  ],
  migrationsDir: path.join(path.dirname(fileURLToPath(import.meta.url)), 'migrations'),
});
