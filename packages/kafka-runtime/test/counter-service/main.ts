import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { topicNames } from '@shoal/contracts';
import { runService } from '../../src/index.js';
import { crashHookFromEnv } from '../crash-at.js';
import { activityJob } from './activity.js';
import { counterHandler, projectLookup } from './handler.js';

/**
 * The runtime tests' service as a process; SHOAL_CRASH_AT makes it kill itself at a hook
 * (crash-at.ts). `COUNTER_ACTIVITY_EVERY_MS` turns on its scheduled activity report
 * (`COUNTER_ACTIVITY_PER_RUN` counters a run, default 10).
 */
const groupEvents = topicNames(process.env.SHOAL_TOPIC_NAMESPACE ?? '').groupEvents;
const activityEveryMs = Number(process.env.COUNTER_ACTIVITY_EVERY_MS ?? 0);
await runService({
  name: 'counter',
  topics: ['occurrences'],
  handle: counterHandler(groupEvents),
  lookups: [projectLookup],
  messageId: (occurrence) => `occurrence:${occurrence.id}`,
  migrationsDir: path.join(path.dirname(fileURLToPath(import.meta.url)), 'migrations'),
  scheduled:
    activityEveryMs > 0
      ? [
          activityJob(
            groupEvents,
            activityEveryMs,
            Number(process.env.COUNTER_ACTIVITY_PER_RUN ?? 10),
          ),
        ]
      : [],
  hook: crashHookFromEnv(),
});
