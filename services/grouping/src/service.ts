import { combinedConfig, orExitOnConfigError, type Env } from '@shoal/config';
import { payloadMessageId, topicNames } from '@shoal/contracts';
import { migrationsDirBeside } from '@shoal/db';
import type { ServiceSpec } from '@shoal/kafka-runtime';
import { groupActivityEveryMs, groupActivityJob } from './activity.js';
import { groupingHandler } from './handler.js';
import { issueTypePoliciesFromEnv } from './issue-types.js';
import { lookups } from './lookups.js';
import { groupingRetention } from './retention.js';

export { lookups as groupingLookups };

export const groupingMigrationsDir = migrationsDirBeside(import.meta.url);

/** Grouping's own variables (the runtime reads the rest); throws ConfigError naming a bad one. */
export const groupingConfig = (source: Env = process.env) =>
  combinedConfig({
    issueTypes: () => issueTypePoliciesFromEnv(source),
    activityEveryMs: () => groupActivityEveryMs(source),
  });

/** Grouping as a runtime service, configured from the environment (main.ts runs it). */
export const groupingService = (): ServiceSpec<
  'occurrences' | 'statusChanges' | 'entityChanges' | 'groupingCommands'
> => {
  const { issueTypes, activityEveryMs } = orExitOnConfigError(() => groupingConfig());
  const { groupEvents } = topicNames(process.env.SHOAL_TOPIC_NAMESPACE ?? '');
  return {
    name: 'grouping',
    topics: ['occurrences', 'statusChanges', 'entityChanges', 'groupingCommands'],
    handle: groupingHandler({ groupEvents, issueTypes }),
    scheduled: [groupActivityJob(groupEvents, activityEveryMs)],
    lookups,
    retention: groupingRetention(issueTypes),
    messageId: payloadMessageId,
    migrationsDir: groupingMigrationsDir,
  };
};
