import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { orExitOnConfigError } from '@shoal/config';
import { payloadMessageId, topicNames } from '@shoal/contracts';
import type { ServiceSpec } from '@shoal/kafka-runtime';
import { regressionConfig } from './config.js';
import { regressionHandler } from './handler.js';
import { regressionRetention } from './retention.js';

export const regressionMigrationsDir = path.join(
  path.dirname(fileURLToPath(import.meta.url)),
  '..',
  'migrations',
);

/** Regression as a runtime service, configured from the environment (main.ts runs it). */
export const regressionService = (): ServiceSpec<
  'groupEvents' | 'entityChanges' | 'regressionCommands'
> => {
  const config = orExitOnConfigError(() => regressionConfig());
  const { statusChanges } = topicNames(process.env.SHOAL_TOPIC_NAMESPACE ?? '');
  return {
    name: 'regression',
    topics: ['groupEvents', 'entityChanges', 'regressionCommands'],
    handle: regressionHandler({ ...config, statusChanges }),
    retention: regressionRetention,
    messageId: payloadMessageId,
    migrationsDir: regressionMigrationsDir,
  };
};
