import { Codec, createRegistry, type GroupEvent } from '@shoal/contracts';
import { HEADER } from '@shoal/kafka-runtime';
import { connections, kafka, type IsolatedDatabase } from '@shoal/testing';
import type { Stack } from './kit.js';

/**
 * A group event put on the topic by hand, as a dead-letter replay would (framed with the registered
 * schema, keyed by group id, its event id as message id), and whether regression has applied it.
 */
export async function publishGroupEvent(stack: Stack, event: GroupEvent): Promise<void> {
  const codec = new Codec(createRegistry(connections().SCHEMA_REGISTRY_URL), stack.ns.topics);
  const producer = kafka().producer();
  await producer.connect();
  try {
    await producer.send({
      topic: stack.ns.topics.groupEvents,
      messages: [
        {
          key: String(event.group_id),
          value: await codec.encode('groupEvents', event),
          headers: { [HEADER.messageId]: event.event_id },
        },
      ],
    });
  } finally {
    await producer.disconnect();
  }
}

export const appliedByRegression = async (db: IsolatedDatabase, messageId: string) =>
  (
    await db.pool
      .query('SELECT 1 FROM regression.processed_messages WHERE message_id = $1', [messageId])
      .catch(() => ({ rowCount: 0 }))
  ).rowCount === 1;
