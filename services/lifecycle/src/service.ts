import { combinedConfig, orExitOnConfigError, type Env } from '@shoal/config';
import { kafkaConnection, registryConnection } from '@shoal/config/connections';
import { topicNames } from '@shoal/contracts';
import { migrationsDirBeside } from '@shoal/db';
import { consumerGroup, type ServiceGroupsSpec } from '@shoal/kafka-runtime';
import { agentApiConfig } from './api/config.js';
import { API_POOL_CONNECTIONS, startAgentApi } from './api/server.js';
import { lifecycleConfigFromEnv } from './config.js';
import { DecidedHere } from './decided-here.js';
import { decideHandler } from './decide/handler.js';
import { decideLookups, decideMessageId } from './decide/lookups.js';
import { decideRetention } from './decide/retention.js';
import { intakeHandler } from './intake/handler.js';
import { intakeLookups, intakeMessageId } from './intake/lookups.js';
import { claimSweeper } from './sweeper.js';

/**
 * Lifecycle as one process (main.ts runs it): two consumer groups in one schema —
 * `shoal.lifecycle.decide` (shoal.lifecycle-commands.v1 → issues, history, outcomes, events) and
 * `shoal.lifecycle.intake` (group events, incidents, entity changes → system commands) — the lease
 * sweeper (a scheduled job), and the agent HTTP API on SHOAL_API_PORT beside the ops port.
 */

export const lifecycleMigrationsDir = migrationsDirBeside(import.meta.url);

export const intakeTopics = ['groupEvents', 'incidents', 'entityChanges'] as const;

/** Every lookup of both groups (the runtime checks per-kind variables against their kinds). */
export const lifecycleLookups = [...decideLookups, ...intakeLookups];

/** Lifecycle's own variables (decide and sweeper, the agent API), every bad one named at once. */
export function lifecycleServiceConfig(source: Env = process.env) {
  const { lifecycle, api } = combinedConfig({
    lifecycle: () => lifecycleConfigFromEnv(source),
    api: () => agentApiConfig(source),
  });
  return { lifecycle, api };
}

export function lifecycleService(source: Env = process.env): ServiceGroupsSpec {
  const { lifecycle, api } = orExitOnConfigError(() => lifecycleServiceConfig(source));
  const namespace = source.SHOAL_TOPIC_NAMESPACE ?? '';
  const topics = topicNames(namespace);
  // decide hands its outcomes to the API of this process (api/waiter.ts)
  const decidedHere = new DecidedHere();
  return {
    name: 'lifecycle',
    // decide first: the sweeper's command ids are keyed by the first group's id
    groups: [
      consumerGroup('decide', {
        topics: ['lifecycleCommands'],
        handle: decideHandler({
          topics: { lifecycle: topics.lifecycle, statusChanges: topics.statusChanges },
          slaMs: lifecycle.slaMs,
          decidedHere,
        }),
        lookups: decideLookups,
        messageId: decideMessageId,
      }),
      consumerGroup('intake', {
        topics: [...intakeTopics],
        handle: intakeHandler({ lifecycleCommands: topics.lifecycleCommands }),
        lookups: intakeLookups,
        messageId: intakeMessageId,
      }),
    ],
    migrationsDir: lifecycleMigrationsDir,
    // the runtime runs it under the first group: decide's early commands
    retention: decideRetention(),
    scheduled: [
      claimSweeper({
        lifecycleCommands: topics.lifecycleCommands,
        everyMs: lifecycle.sweepIntervalMs,
      }),
    ],
    alongside: {
      connections: API_POOL_CONNECTIONS,
      start: ({ pool, logger }) =>
        startAgentApi({
          config: api,
          pool,
          logger: logger.child({ component: 'agent-api' }),
          kafka: kafkaConnection(source),
          registry: registryConnection(source),
          namespace,
          decidedHere,
        }).then((running) => ({ stop: () => running.close() })),
    },
  };
}
