import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { topicNames } from '@shoal/contracts';
import { runService } from '../../src/index.js';
import { crashHookFromEnv } from '../crash-at.js';
import { counterHandler, projectLookup } from './handler.js';

/** The runtime tests' service as a process; SHOAL_CRASH_AT makes it kill itself at a hook (crash-at.ts). */
await runService({
  name: 'counter',
  topics: ['occurrences'],
  handle: counterHandler(topicNames(process.env.SHOAL_TOPIC_NAMESPACE ?? '').groupEvents),
  lookups: [projectLookup],
  messageId: (occurrence) => `occurrence:${occurrence.id}`,
  migrationsDir: path.join(path.dirname(fileURLToPath(import.meta.url)), 'migrations'),
  hook: crashHookFromEnv(),
});
