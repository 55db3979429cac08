import type { Codec, MessageTypes, TopicKey } from '@shoal/contracts';
import type { KafkaMessage } from 'kafkajs';
import type { Failure } from './dead-letter.js';
import { asError, classify } from './errors.js';
import { HEADER, headersOf, messageIdOf, type Message } from './message.js';

/**
 * Step 1 of a chunk: a record's bytes to a `Message` the handler can take, or the failure that
 * keeps it from the handler (`decode_error`, `schema_invalid`, or whatever `classify` says of
 * another permanent error), with the message id either way.
 *
 * Blocks on: the schema registry, the first time a schema id is seen (the codec caches it).
 * Throws: transient errors only (registry unreachable); the chunk is retried.
 * Rebalance: holds no state.
 */
export interface Decoded<T> {
  record: KafkaMessage;
  offset: number;
  messageId: string;
  /** The record's headers as text (`headersOf`), read once for every step of the chunk. */
  headers: Record<string, string>;
  message?: Message<T>;
  failure?: Failure;
}

export function recordDecoder<K extends TopicKey>(options: {
  codec: Codec;
  topicKeyByName: Map<string, K>;
  /** An id the payload carries, so an upstream re-send is applied once. */
  messageId?: (value: MessageTypes[K], topicKey: K) => string | undefined;
}) {
  type T = MessageTypes[K];
  return async function decode(
    topic: string,
    partition: number,
    record: KafkaMessage,
  ): Promise<Decoded<T>> {
    const topicKey = options.topicKeyByName.get(topic)!;
    const headers = headersOf(record.headers);
    const offset = Number(record.offset);
    try {
      const value = (await options.codec.decode(topicKey, record.value)) as T;
      const messageId = messageIdOf(
        record,
        headers,
        topic,
        partition,
        options.messageId?.(value, topicKey),
      );
      const message: Message<T> = {
        topic,
        topicKey,
        partition,
        offset,
        key: record.key?.toString() ?? null,
        value,
        headers,
        timestamp: Number(record.timestamp),
        messageId,
        // from the header the producer sets; the runtime reads no payload field
        traceId: headers[HEADER.traceId],
      };
      return { record, offset, message, messageId, headers };
    } catch (error) {
      const classified = classify(error);
      if (classified.kind === 'transient') throw error;
      return {
        record,
        offset,
        failure: { reason: classified.reason, entity: classified.entity, error: asError(error) },
        messageId: messageIdOf(record, headers, topic, partition),
        headers,
      };
    }
  };
}
