import type { MessageTypes, TopicKey } from '@shoal/contracts';
import type { Check } from '@shoal/observability';
import { runConsumer, type ConsumerOptions, type RunningConsumer } from './consumer.js';
import type { Handler } from './handler.js';
import type { Lookup } from './lookups.js';
import type { FailurePolicyConfig } from './policy.js';

/**
 * More than one consumer group in one service process (lifecycle: an intake group and a decide
 * group), sharing what a process has once: the schema and its migrations, the pool, the Kafka client,
 * the ops port, SIGTERM. Each group is its own `runConsumer` (its Kafka group, offsets, ledger rows,
 * relay and pruner, all keyed by its group id); this module names the groups and runs them as one.
 *
 * Blocks on: starting each group in turn (a group's start connects and subscribes).
 * Throws: what a group's start throws, after stopping the groups already started.
 * Stop: every group stops at once, each letting its batch in flight commit; a group stopped by a
 * dead-letter limit stops the others, and `done` rejects with its error.
 * Rebalance: per group, as `runConsumer` does; one group's rebalance does not pause another.
 */

/** What one group consumes and how it applies it (the rest of `ConsumerOptions` is the service's). */
export interface ConsumerGroupSpec<K extends TopicKey> {
  topics: K[];
  handle: Handler<MessageTypes[K]>;
  lookups?: Lookup<MessageTypes[K]>[];
  messageId?: (value: MessageTypes[K], topicKey: K) => string | undefined;
}

/** The options every group of a process shares; `group` is set per group. */
export type SharedConsumerOptions = Omit<
  ConsumerOptions<TopicKey>,
  'topics' | 'handle' | 'lookups' | 'messageId'
>;

/** A group with its message types closed over, so groups of different topics sit in one list. */
export interface ConsumerGroup {
  /** Appended to the service's group id (`shoal.lifecycle` → `shoal.lifecycle.intake`); '' keeps it. */
  name: string;
  topics: TopicKey[];
  /** Its lookups, for checking the per-kind variables against the kinds the process looks up. */
  lookups: Lookup<never>[];
  start(options: SharedConsumerOptions): Promise<RunningConsumer>;
}

export function consumerGroup<K extends TopicKey>(
  name: string,
  spec: ConsumerGroupSpec<K>,
): ConsumerGroup {
  if (name !== '' && !/^[a-z][a-z0-9-]*$/.test(name))
    throw new Error(`consumer group name ${JSON.stringify(name)}: lower case, digits and -`);
  return {
    name,
    topics: spec.topics,
    lookups: (spec.lookups ?? []) as Lookup<never>[],
    // only the group's own fields: a one-group service passes its whole spec
    start: (options) =>
      runConsumer<K>({
        ...options,
        topics: spec.topics,
        handle: spec.handle,
        lookups: spec.lookups,
        messageId: spec.messageId,
        failure: forKinds(
          options.failure,
          (spec.lookups ?? []).map((l) => l.entity),
        ),
      }),
  };
}

/**
 * The per-kind settings a group's kinds use: the process checked every one against the kinds any
 * of its groups looks up (serviceConfig); each group's consumer checks them against its own.
 */
function forKinds(failure: FailurePolicyConfig, kinds: string[]): FailurePolicyConfig {
  const pick = <V>(byKind: Partial<Record<string, V>>) =>
    Object.fromEntries(Object.entries(byKind).filter(([kind]) => kinds.includes(kind)));
  return {
    ...failure,
    policy: {
      ...failure.policy,
      staleReferenceByEntity: pick(failure.policy.staleReferenceByEntity),
    },
    references: {
      ...failure.references,
      modeByEntity: pick(failure.references.modeByEntity),
      holdDeadlineMsByEntity: pick(failure.references.holdDeadlineMsByEntity),
    },
  };
}

export const consumerGroupId = (base: string, group: ConsumerGroup) =>
  group.name === '' ? base : `${base}.${group.name}`;

export interface RunningGroup {
  group: string;
  spec: ConsumerGroup;
  running: RunningConsumer;
}

export interface RunningGroups {
  groups: RunningGroup[];
  /** Resolves after stop(); rejects with the first group's error when one stopped by itself. */
  done: Promise<void>;
  stop(): Promise<void>;
  /**
   * `/readyz`'s consumer checks: `consumer` for a one-group process (as before), else one
   * `consumer:<name>` per group, so a halted partition names its group.
   */
  checks: Record<string, Check>;
}

/**
 * Starts each group with `options(group id)` (a group's own pruning, hooks, …), in order.
 * Group ids must differ: two groups under one id would share offsets.
 */
export async function startGroups(
  base: string,
  specs: ConsumerGroup[],
  options: (group: string, spec: ConsumerGroup, index: number) => SharedConsumerOptions,
): Promise<RunningGroups> {
  if (specs.length === 0) throw new Error('a service runs at least one consumer group');
  const ids = specs.map((s) => consumerGroupId(base, s));
  const repeated = ids.find((id, i) => ids.indexOf(id) !== i);
  if (repeated !== undefined) throw new Error(`consumer group ${repeated} is declared twice`);
  const groups: RunningGroup[] = [];
  try {
    for (const [i, spec] of specs.entries())
      groups.push({ group: ids[i]!, spec, running: await spec.start(options(ids[i]!, spec, i)) });
  } catch (error) {
    await Promise.all(groups.map((g) => g.running.stop()));
    throw error;
  }
  const stop = async () => void (await Promise.all(groups.map((g) => g.running.stop())));
  // the first group to end by itself (a dead-letter limit, a crash) ends the others
  const done = Promise.race(groups.map((g) => g.running.done)).then(
    () => Promise.all(groups.map((g) => g.running.done)).then(() => undefined),
    async (error: unknown) => {
      await stop();
      throw error;
    },
  );
  const checks: Record<string, Check> =
    groups.length === 1
      ? { consumer: groups[0]!.running.check }
      : Object.fromEntries(groups.map((g) => [`consumer:${g.spec.name}`, g.running.check]));
  return { groups, done, stop, checks };
}
