import {
  Codec,
  createRegistry,
  type GroupEvent,
  type MessageTypes,
  type TopicKey,
} from '@shoal/contracts';
import { HEADER } from '@shoal/kafka-runtime';
import { connections, kafka, type IsolatedDatabase } from '@shoal/testing';
import { uniqueUuid, type Stack } from './kit.js';

/**
 * Messages put on regression's input topics by hand, as a dead-letter replay or an operator's
 * command would arrive (framed with the registered schema, with their message id), and whether
 * regression has applied one.
 */
export async function publishOn<K extends TopicKey>(
  stack: Pick<Stack, 'ns'>,
  topicKey: K,
  messages: { key: string; id: string; value: MessageTypes[K] }[],
): Promise<void> {
  const codec = new Codec(createRegistry(connections().SCHEMA_REGISTRY_URL), stack.ns.topics);
  const producer = kafka().producer();
  await producer.connect();
  try {
    await producer.send({
      topic: stack.ns.topics[topicKey],
      messages: await Promise.all(
        messages.map(async (m) => ({
          key: m.key,
          value: await codec.encode(topicKey, m.value),
          headers: { [HEADER.messageId]: m.id },
        })),
      ),
    });
  } finally {
    await producer.disconnect();
  }
}

/** A group event keyed by group id, its event id as message id. */
export const publishGroupEvents = (stack: Pick<Stack, 'ns'>, events: GroupEvent[]) =>
  publishOn(
    stack,
    'groupEvents',
    events.map((e) => ({ key: String(e.group_id), id: e.event_id, value: e })),
  );

export const publishGroupEvent = (stack: Pick<Stack, 'ns'>, event: GroupEvent) =>
  publishGroupEvents(stack, [event]);

/**
 * A group created, resolved in web@1.0.0 (status sequence 1, resolution 1) and then seen in
 * web@2.0.0: regression proposes one regression for it, which stays proposed until grouping's answer.
 */
export function regressingGroup(groupId: number): GroupEvent[] {
  const base = { group_id: groupId, project_id: 1 };
  return [
    {
      ...base,
      event_id: uniqueUuid(),
      event_type: 'group_created',
      occurred_at: '2025-01-01T00:00:00Z',
      primary_fingerprint: `fp-${groupId}`,
    },
    {
      ...base,
      event_id: uniqueUuid(),
      event_type: 'status_changed',
      occurred_at: '2025-01-01T01:00:00Z',
      status: 'resolved',
      previous_status: 'unresolved',
      sequence: 1,
      resolution_id: 1,
      decided_by: 'upstream',
      resolution: { type: 'in_release', release: 'web@1.0.0', resolved_at: '2025-01-01T01:00:00Z' },
    },
    {
      ...base,
      event_id: uniqueUuid(),
      event_type: 'occurrence_grouped',
      occurred_at: '2025-01-02T00:00:00Z',
      occurrence_id: uniqueUuid(),
      status: 'resolved',
      release: 'web@2.0.0',
      event_timestamp: '2025-01-02T00:00:00Z',
    },
  ];
}

/** Grouping's answer to a regression's change: the group unresolved, decided by regression. */
export const confirmation = (groupId: number, changeId: string): GroupEvent => ({
  event_id: uniqueUuid(),
  event_type: 'status_changed',
  occurred_at: '2025-01-02T00:00:01Z',
  group_id: groupId,
  project_id: 1,
  status: 'unresolved',
  previous_status: 'resolved',
  sequence: 2,
  resolution_id: 1,
  decided_by: 'regression',
  change_id: changeId,
});

/** The change id of the group's regression record. */
export const changeIdOf = async (db: IsolatedDatabase, groupId: number) =>
  (
    await db.pool.query<{ change_id: string }>(
      'SELECT change_id FROM regression.regressions WHERE group_id = $1',
      [groupId],
    )
  ).rows[0]!.change_id;

export const appliedByRegression = async (db: IsolatedDatabase, messageId: string) =>
  (
    await db.pool
      .query('SELECT 1 FROM regression.processed_messages WHERE message_id = $1', [messageId])
      .catch(() => ({ rowCount: 0 }))
  ).rowCount === 1;
