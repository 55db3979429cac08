import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { topicNames } from '@shoal/contracts';
import { runService, type RuntimeHook } from '../../src/index.js';
import { counterHandler, projectLookup } from './handler.js';

/**
 * The runtime tests' service as a process. COUNTER_OUTPUT_TOPIC names where its events go;
 * COUNTER_CRASH_AT=<hook>:<n> makes it SIGKILL itself the n-th time the runtime reaches <hook>
 * (e.g. relay:published:2 dies between publishing outbox rows and marking them).
 */
const [crashPoint, crashCount] = (() => {
  const spec = process.env.COUNTER_CRASH_AT;
  if (!spec) return [undefined, 0] as const;
  const at = spec.lastIndexOf(':');
  return [spec.slice(0, at) as RuntimeHook, Number(spec.slice(at + 1))] as const;
})();
let reached = 0;

await runService({
  name: 'counter',
  topics: ['occurrences'],
  handle: counterHandler(
    process.env.COUNTER_OUTPUT_TOPIC ??
      topicNames(process.env.SHOAL_TOPIC_NAMESPACE ?? '').groupEvents,
  ),
  lookups: [projectLookup],
  messageId: (occurrence) => `occurrence:${occurrence.id}`,
  migrationsDir: path.join(path.dirname(fileURLToPath(import.meta.url)), 'migrations'),
  hook: (point) => {
    if (point === crashPoint && ++reached >= crashCount) process.kill(process.pid, 'SIGKILL');
  },
});
