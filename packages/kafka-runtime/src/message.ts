import { hash } from 'node:crypto';
import type { IHeaders, KafkaMessage } from 'kafkajs';
import type { TopicKey } from '@shoal/contracts';
import { v5 as uuidv5 } from 'uuid';

/** A decoded record as a handler sees it. */
export interface Message<T = unknown> {
  topic: string;
  topicKey: TopicKey;
  partition: number;
  offset: number;
  key: string | null;
  value: T;
  headers: Record<string, string>;
  /** Kafka timestamp, epoch milliseconds. */
  timestamp: number;
  /** Idempotency key: survives redelivery and replay from a dead-letter topic. */
  messageId: string;
  /** The `shoal.trace-id` header (the producer sets it from the payload). */
  traceId?: string;
  /** Set when the message is re-driven after waiting for an unknown entity: when it was first held. */
  heldSince?: Date;
}

/** An event a handler emits; the runtime writes it to the outbox in the handler's transaction. */
export interface OutgoingEvent {
  /** The full topic name (namespace included) */
  topic: string;
  key: string;
  value: Record<string, unknown>;
  headers?: Record<string, string>;
}

export const HEADER = {
  messageId: 'shoal.message-id',
  traceId: 'shoal.trace-id',
} as const;

export function headersOf(headers: IHeaders | undefined): Record<string, string> {
  const result: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers ?? {})) {
    if (value === undefined) continue;
    const first = Array.isArray(value) ? value[0] : value;
    if (first !== undefined) result[name] = first.toString();
  }
  return result;
}

export const coordinatesId = (topic: string, partition: number, offset: string | number) =>
  `${topic}:${partition}:${offset}`;

/**
 * A message's id: the `shoal.message-id` header (set by producers, the outbox relay and every
 * dead-letter record, so a replay keeps it), else what the service derives from the payload,
 * else the record's coordinates.
 */
export function messageIdOf(
  record: KafkaMessage,
  headers: Record<string, string>,
  topic: string,
  partition: number,
  fromPayload?: string,
): string {
  return headers[HEADER.messageId] ?? fromPayload ?? coordinatesId(topic, partition, record.offset);
}

const EVENT_NAMESPACE = '6f1d4c1e-9a7b-5b0e-8c8e-2f6d5b3a9c41';
const EVENT_NAMESPACE_BYTES = Buffer.from(EVENT_NAMESPACE.replaceAll('-', ''), 'hex');
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * uuid's `v5(name, EVENT_NAMESPACE)`, the same id (test/message.test.ts compares them), in one
 * SHA-1 call: uuid's own took an eighth of the consumer thread's time in bench/runtime (a byte array
 * built char by char, the namespace parsed on every call). A name with a lone surrogate goes to uuid,
 * which refuses it, as before.
 */
function eventUuid(name: string): string {
  if (LONE_SURROGATE.test(name)) return uuidv5(name, EVENT_NAMESPACE);
  const bytes = Buffer.allocUnsafe(16 + Buffer.byteLength(name));
  EVENT_NAMESPACE_BYTES.copy(bytes);
  bytes.write(name, 16);
  const h = hash('sha1', bytes);
  // version 5 in the 13th hex digit, the RFC 4122 variant (10xx) in the 17th
  const variant = ((parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/**
 * Stable across re-runs: the same input message and ordinal give the same event id. Emitted events
 * count 0, 1, …; a message's dead letter is `dlq:<attempt>`.
 */
export function eventId(group: string, messageId: string, ordinal: number | string): string {
  return eventUuid(`${group}|${messageId}|${ordinal}`);
}
