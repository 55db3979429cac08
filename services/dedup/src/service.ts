import { orExitOnConfigError } from '@shoal/config';
import { topicNames, type TopicKey } from '@shoal/contracts';
import { migrationsDirBeside } from '@shoal/db';
import type { ServiceSpec } from '@shoal/kafka-runtime';
import { dedupConfigFromEnv } from './config.js';
import { dedupHandler, type DedupMessage } from './handler.js';
import { lookups } from './lookups.js';

export { dedupConfigFromEnv, lookups as dedupLookups };

export const dedupMigrationsDir = migrationsDirBeside(import.meta.url);

export const dedupTopics = ['groupEvents', 'entityChanges', 'dedupCommands'] as const;

/** The id a message carries in its payload: an event's `event_id`, a command's `command_id`. */
export const dedupMessageId = (value: DedupMessage, _topic: TopicKey): string | undefined =>
  'command_id' in value ? value.command_id : value.event_id;

/** Dedup as a runtime service, configured from the environment (main.ts runs it). */
export const dedupService = (): ServiceSpec<(typeof dedupTopics)[number]> => {
  const config = orExitOnConfigError(() => dedupConfigFromEnv());
  const { incidents } = topicNames(process.env.SHOAL_TOPIC_NAMESPACE ?? '');
  return {
    name: 'dedup',
    topics: [...dedupTopics],
    handle: dedupHandler({ incidents, config }),
    lookups,
    messageId: dedupMessageId,
    migrationsDir: dedupMigrationsDir,
  };
};
