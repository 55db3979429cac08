import { orExitOnConfigError } from '@shoal/config';
import { payloadMessageId, topicNames } from '@shoal/contracts';
import { migrationsDirBeside } from '@shoal/db';
import type { ServiceSpec } from '@shoal/kafka-runtime';
import { regressionConfig } from './config.js';
import { regressionHandler } from './handler.js';
import { regressionRetention } from './retention.js';

export { regressionConfig };

export const regressionMigrationsDir = migrationsDirBeside(import.meta.url);

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
