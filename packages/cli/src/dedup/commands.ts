import { randomUUID } from 'node:crypto';
import { connectionEnv, loadConfig, z } from '@shoal/config';
import { Codec, createRegistry, topicNames, type DedupCommand } from '@shoal/contracts';
import { kafkaClient } from '../connections.js';

/**
 * Operators' merge and split, as dedup commands on `shoal.dedup-commands.v1` (keyed by incident
 * id, the command id as message id): dedup stays the only writer of its tables, decides whether
 * the command is allowed and records it as an event on `shoal.incidents.v1`.
 */

export const commandConnections = () =>
  loadConfig({
    KAFKA_BROKERS: connectionEnv.KAFKA_BROKERS,
    SCHEMA_REGISTRY_URL: connectionEnv.SCHEMA_REGISTRY_URL,
    SHOAL_TOPIC_NAMESPACE: z.string().default(''),
  });

export function dedupCommand(
  fields: Pick<DedupCommand, 'command' | 'incident_id' | 'actor'> &
    Pick<DedupCommand, 'from_incident_id' | 'group_id' | 'reason'>,
): DedupCommand {
  return {
    command_id: randomUUID(),
    issued_at: new Date().toISOString(),
    ...Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined)),
  } as DedupCommand;
}

/** Publishes `command` (registry-framed; acks from every replica) and returns the topic it went to. */
export async function publishDedupCommand(command: DedupCommand): Promise<string> {
  const config = commandConnections();
  const topics = topicNames(config.SHOAL_TOPIC_NAMESPACE);
  const value = await new Codec(createRegistry(config.SCHEMA_REGISTRY_URL), topics).encode(
    'dedupCommands',
    command,
  );
  const producer = kafkaClient(config.KAFKA_BROKERS).producer({ idempotent: true });
  await producer.connect();
  try {
    await producer.send({
      topic: topics.dedupCommands,
      acks: -1,
      messages: [
        {
          key: String(command.incident_id),
          value,
          headers: { 'shoal.message-id': command.command_id },
        },
      ],
    });
  } finally {
    await producer.disconnect();
  }
  return topics.dedupCommands;
}
