import { connectionEnv, loadConfig, z } from '@shoal/config';
import { Codec, createRegistry, topicNames, type MessageTypes } from '@shoal/contracts';
import { kafkaClient } from './connections.js';

/**
 * Operators' commands to a service, published on the command topic that service owns (CLI.md:
 * changes to a service's data travel as commands, never as writes into its tables). Each is framed
 * with the registered schema, keyed as its topic is, with its command id as message id (the
 * service's ledger applies it once), in one idempotent send acknowledged by every replica.
 */

export const commandConnections = () =>
  loadConfig({
    KAFKA_BROKERS: connectionEnv.KAFKA_BROKERS,
    SCHEMA_REGISTRY_URL: connectionEnv.SCHEMA_REGISTRY_URL,
    SHOAL_TOPIC_NAMESPACE: z.string().default(''),
  });

export interface OutgoingCommand<V> {
  key: string;
  commandId: string;
  value: V;
}

/** Publishes `commands` on the topic of `topicKey` and returns that topic's full name. */
export async function publishCommands<
  K extends 'dedupCommands' | 'regressionCommands' | 'groupingCommands' | 'lifecycleCommands',
>(topicKey: K, commands: OutgoingCommand<MessageTypes[K]>[]): Promise<string> {
  const config = commandConnections();
  const topics = topicNames(config.SHOAL_TOPIC_NAMESPACE);
  const codec = new Codec(createRegistry(config.SCHEMA_REGISTRY_URL), topics);
  const messages = await Promise.all(
    commands.map(async (c) => ({
      key: c.key,
      value: await codec.encode(topicKey, c.value),
      headers: { 'shoal.message-id': c.commandId },
    })),
  );
  const producer = kafkaClient(config.KAFKA_BROKERS).producer({ idempotent: true });
  await producer.connect();
  try {
    await producer.send({ topic: topics[topicKey], acks: -1, messages });
  } finally {
    await producer.disconnect();
  }
  return topics[topicKey];
}
